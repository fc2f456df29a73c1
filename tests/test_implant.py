"""Implantation, private inference and recovery on tied, untied and classification models."""

import copy

import pytest
import torch
from torch import nn

from operators.errors import UnsupportedModelError
from operators.implant import shake_model, vocabulary_tensors
from operators.inference import private_logits
from operators.key import generate_key
from operators.recovery import recover_model
from operators.settings import preset
from tests.conftest import random_batch

MODELS = ["tiny_mlm", "tiny_causal_lm", "tiny_classifier"]


def shaken_pair(model, tokenizer, preset_name, seed=b"\x05" * 32):
    key = generate_key(preset(preset_name), model, tokenizer, "tiny", seed=seed)
    return key, shake_model(copy.deepcopy(model), key)


@pytest.mark.parametrize("fixture", MODELS)
@torch.no_grad()
def test_horizontal_only_shaking_is_lossless(fixture, request, tiny_tokenizer):
    model = request.getfixturevalue(fixture)
    key, shaken = shaken_pair(model, tiny_tokenizer, "horizontal-only")
    ids = random_batch(tiny_tokenizer)
    plain = model(input_ids=ids).logits
    private = private_logits(shaken, key, ids)
    assert (private - plain).abs().max().item() <= 1e-5
    # and the rows really moved: plaintext ids now look up other rows
    looked_up = shaken.get_input_embeddings()(ids)[:, 1:-1]
    assert not torch.isclose(looked_up, model.get_input_embeddings()(ids)[:, 1:-1]).all(dim=-1).any()


def test_tied_output_stays_tied_and_bias_follows(tiny_mlm, tiny_tokenizer):
    key, shaken = shaken_pair(tiny_mlm, tiny_tokenizer, "medium")
    assert shaken.get_output_embeddings().weight is shaken.get_input_embeddings().weight
    p = key.permutation
    bias, shaken_bias = tiny_mlm.cls.predictions.bias, shaken.cls.predictions.bias
    assert torch.equal(shaken_bias[p.forward], bias)


def test_untied_output_gets_permutation_and_its_own_noise(tiny_causal_lm, tiny_tokenizer):
    key, shaken = shaken_pair(tiny_causal_lm, tiny_tokenizer, "light")
    tensors = vocabulary_tensors(shaken)
    assert tensors.output_weight is not None
    p = key.permutation
    plain_out = tiny_causal_lm.get_output_embeddings().weight
    moved = tensors.output_weight[p.forward]  # row pi(i) back to row i
    noise = moved - plain_out
    assert 0.3 < (noise.std() / plain_out.std()).item() < 0.7  # gaussian at 0.5x the output's scale
    input_noise = (
        shaken.get_input_embeddings().weight[p.forward] - tiny_causal_lm.get_input_embeddings().weight
    )
    assert not torch.allclose(
        noise / plain_out.std(), input_noise / tiny_causal_lm.get_input_embeddings().weight.std()
    )


def tune_a_little(model, ids, steps=3):
    """A few optimiser steps on the shaken model, as the cloud's private tuning would."""
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        logits = model(input_ids=ids).logits
        loss = logits.float().pow(2).mean()
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return model.eval()


@pytest.mark.parametrize("fixture", MODELS)
@torch.no_grad()
def test_recovery_is_exact_after_tuning(fixture, request, tiny_tokenizer):
    model = request.getfixturevalue(fixture)
    key, shaken = shaken_pair(model, tiny_tokenizer, "tilt-inflate-noise")
    ids = random_batch(tiny_tokenizer, seed=1)
    with torch.enable_grad():
        tuned = tune_a_little(shaken, key.permutation.encode(ids))
    before = copy.deepcopy(tuned.get_input_embeddings().weight)
    recovered = copy.deepcopy(tuned)
    assert recover_model(recovered, key) == []
    assert not torch.equal(before, shake_model(copy.deepcopy(model), key).get_input_embeddings().weight)
    expected = private_logits(tuned, key, ids)
    got = recovered(input_ids=ids).logits
    if fixture == "tiny_classifier":
        assert torch.equal(got, expected)
    else:  # vocabulary logits come from a matmul over reordered rows: equal up to float rounding
        assert (got - expected).abs().max().item() <= 1e-6
    assert recovered.config.shaketune["state"] == "recovered"


def test_unknown_vocabulary_sized_tensor_is_refused(tiny_mlm, tiny_tokenizer):
    key = generate_key(preset("light"), tiny_mlm, tiny_tokenizer, "tiny")
    tiny_mlm.register_buffer("token_counts", torch.zeros(len(tiny_tokenizer)))
    with pytest.raises(UnsupportedModelError, match="token_counts"):
        shake_model(tiny_mlm, key)


def test_model_without_input_embedding_is_refused():
    with pytest.raises(UnsupportedModelError, match="no input embedding"):
        vocabulary_tensors(nn.Linear(3, 3))


def test_same_key_same_shaken_model(tiny_mlm, tiny_tokenizer):
    _, a = shaken_pair(tiny_mlm, tiny_tokenizer, "tilt-inflate-noise")
    _, b = shaken_pair(tiny_mlm, tiny_tokenizer, "tilt-inflate-noise")
    _, c = shaken_pair(tiny_mlm, tiny_tokenizer, "tilt-inflate-noise", seed=b"\x06" * 32)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_horizontal_only_private_tuning_equals_plaintext_tuning(tiny_classifier, tiny_tokenizer):
    """The cloud's tuning on shaken ids does exactly the plaintext arithmetic, row for row."""
    from objectives.tuning import TuningBudget, fine_tune

    key, shaken = shaken_pair(tiny_classifier, tiny_tokenizer, "horizontal-only")
    ids = random_batch(tiny_tokenizer, rows=24, seed=4).tolist()
    labels = [i % 2 for i in range(24)]
    budget = TuningBudget(steps=5, batch_size=8, learning_rate=1e-3)
    plain = copy.deepcopy(tiny_classifier)
    fine_tune(plain, ids, labels, budget, pad_id=0, seed=7)
    fine_tune(shaken, key.permutation.encode(torch.tensor(ids)).tolist(), labels, budget, pad_id=0, seed=7)
    test_ids = random_batch(tiny_tokenizer, seed=5)
    with torch.no_grad():
        assert torch.equal(private_logits(shaken, key, test_ids), plain(input_ids=test_ids).logits)


def test_body_tuning_leaves_the_uploaded_rows_as_they_are(tiny_classifier, tiny_tokenizer):
    """Tuning mode ``body`` trains everything but the input embedding: the cloud's rows stay as uploaded."""
    from objectives.tuning import TuningBudget, fine_tune

    _, shaken = shaken_pair(tiny_classifier, tiny_tokenizer, "tilt-inflate-noise")
    uploaded = shaken.get_input_embeddings().weight.detach().clone()
    layer = copy.deepcopy(shaken.bert.encoder.layer[0].state_dict())
    ids = random_batch(tiny_tokenizer, rows=16, seed=4).tolist()
    fine_tune(shaken, ids, [i % 2 for i in range(16)], TuningBudget(3, 8, 1e-3, "body"), pad_id=0, seed=7)
    assert torch.equal(shaken.get_input_embeddings().weight, uploaded)
    assert not torch.equal(
        shaken.bert.encoder.layer[0].state_dict()["attention.self.query.weight"],
        layer["attention.self.query.weight"],
    )

"""Homophonic horizontal shaking: copy counts, the map, implantation, private inference, recovery, keys."""

import copy
import json
import math

import pytest
import torch

from operators.errors import KeyFileError, SettingsError
from operators.homophonic import copy_counts, expected_max_share
from operators.implant import shake_model
from operators.inference import private_logits
from operators.key import generate_key
from operators.keyfile import key_to_dict, load_key, save_key
from operators.recovery import recover_model
from operators.settings import HomophoneSettings, OperatorSettings, ShakeSettings
from tests.conftest import random_batch

SEED = b"\x42" * 32


def tiny_prior(tokenizer) -> torch.Tensor:
    """Zipf-like public counts: id 5 carries ~20% of the text, the tail a little each."""
    prior = torch.zeros(len(tokenizer), dtype=torch.float64)
    prior[5:] = 1000.0 / torch.arange(1, len(tokenizer) - 4, dtype=torch.float64)
    return prior


def homophonic(max_share=0.02, copy_noise=0.0, ops=()):
    chain = tuple(OperatorSettings(*op) for op in ops)
    return ShakeSettings(1.0, chain, HomophoneSettings(max_share, copy_noise))


@pytest.fixture()
def key(tiny_classifier, tiny_tokenizer):
    return generate_key(
        homophonic(), tiny_classifier, tiny_tokenizer, "tiny", SEED, tiny_prior(tiny_tokenizer)
    )


def test_copy_counts_follow_the_prior_and_flatten_it(tiny_tokenizer):
    prior = tiny_prior(tiny_tokenizer)
    specials = tiny_tokenizer.all_special_ids
    counts = copy_counts(prior, specials, 0.02)
    share = prior[5] / prior.sum()
    assert int(counts[5]) == math.ceil(float(share) / 0.02) > 5
    assert all(int(counts[i]) == 1 for i in specials)
    assert expected_max_share(prior, counts, specials) <= 0.02
    assert torch.equal(copy_counts(prior, specials, 1.0), torch.ones(len(prior), dtype=torch.long))
    with pytest.raises(SettingsError, match="max_share"):
        copy_counts(prior, specials, 0.0)


def test_every_copy_decodes_to_its_token_and_specials_stay(key, tiny_tokenizer):
    h = key.horizontal
    assert h.size == key.shaken_vocab_size > len(tiny_tokenizer)
    assert torch.equal(torch.bincount(h.plain_of_shaken, minlength=h.plain_size), h.copies)
    for special in tiny_tokenizer.all_special_ids:
        assert int(key.encode(torch.tensor([special]))[0]) == special
    moved = torch.nonzero(key.permutation.forward != torch.arange(h.plain_size)).flatten()
    assert not bool((h.shaken_of_slot[h.start[moved]] == moved).any())  # a moved token's ids all move


def test_encoding_picks_copies_at_random_per_occurrence_and_decodes_exactly(key):
    ids = torch.full((30_000,), 5)
    shaken = key.encode(ids)
    assert torch.equal(key.horizontal.decode(shaken), ids)
    k = int(key.horizontal.copies[5])
    seen = torch.bincount(shaken)[shaken.unique()]
    assert len(seen) == k  # every copy is used...
    expected = len(ids) / k
    assert float((seen - expected).abs().max()) < 0.1 * expected  # ...about equally often
    assert not torch.equal(key.encode(ids), shaken)  # fresh OS randomness on every call
    again = key.encode(ids, key.occurrence_stream("x")), key.encode(ids, key.occurrence_stream("x"))
    assert torch.equal(*again)  # a named key stream repeats (for measurements)


def test_horizontal_only_homophonic_shaking_is_lossless_and_recovery_exact(
    key, tiny_classifier, tiny_tokenizer
):
    original = copy.deepcopy(tiny_classifier)
    ids = random_batch(tiny_tokenizer)
    shaken = shake_model(copy.deepcopy(tiny_classifier), key)
    assert shaken.get_input_embeddings().weight.shape[0] == key.shaken_vocab_size
    with torch.no_grad():
        plain = original(input_ids=ids).logits
        assert torch.equal(private_logits(shaken, key, ids), plain)  # whatever copies are drawn
        recover_model(shaken, key)
        assert torch.equal(shaken.get_input_embeddings().weight, original.get_input_embeddings().weight)
        assert torch.equal(shaken(input_ids=ids).logits, plain)


def test_copies_get_their_own_noise_and_recovery_averages_them(tiny_classifier, tiny_tokenizer):
    settings = homophonic(copy_noise=1.0, ops=[("gaussian", 0.5, 1.0)])
    key = generate_key(settings, tiny_classifier, tiny_tokenizer, "tiny", SEED, tiny_prior(tiny_tokenizer))
    shaken = shake_model(copy.deepcopy(tiny_classifier), key)
    rows = shaken.get_input_embeddings().weight.detach().clone()
    h = key.horizontal
    copies_of_5 = h.shaken_of_slot[h.start[5] : h.start[5] + h.copies[5]]
    assert torch.cdist(rows[copies_of_5], rows[copies_of_5]).triu(1).max() > 0
    assert float(torch.cdist(rows[copies_of_5], rows[copies_of_5]).fill_diagonal_(1e9).min()) > 0
    recover_model(shaken, key)
    recovered = shaken.get_input_embeddings().weight
    assert recovered.shape[0] == len(tiny_tokenizer)
    assert torch.allclose(recovered[5], rows[copies_of_5].mean(dim=0), atol=1e-6)


def test_models_with_a_language_model_head_get_one_head_row_per_copy(tiny_mlm, tiny_tokenizer):
    """(Language-model heads in depth: tests/test_homophonic_lm.py.)"""
    key = generate_key(homophonic(), tiny_mlm, tiny_tokenizer, "tiny", SEED, tiny_prior(tiny_tokenizer))
    shaken = shake_model(tiny_mlm, key)
    assert shaken.get_output_embeddings().weight is shaken.get_input_embeddings().weight
    assert shaken.get_output_embeddings().weight.shape[0] == key.shaken_vocab_size


def test_settings_validate_and_keep_the_1to1_form(tiny_classifier, tiny_tokenizer):
    assert "homophones" not in ShakeSettings().to_dict()
    settings = homophonic(0.01, 2.0)
    assert ShakeSettings.from_dict(json.loads(settings.to_json())) == settings
    assert "homophones max 1.00%" in settings.describe()
    for bad, message in [
        ({"max_share": 0.0}, "max_share"),
        ({"max_share": 1.0, "copy_noise": 1.0}, "needs max_share < 1"),
        ({"max_share": 0.01, "copy_noise": -1}, "copy_noise"),
        ({"max_share": 0.01, "copies": 3}, "unknown field"),
    ]:
        with pytest.raises(SettingsError, match=message):
            ShakeSettings.from_dict({"homophones": bad})
    with pytest.raises(SettingsError, match="public text"):
        generate_key(settings, tiny_classifier, tiny_tokenizer, "tiny", SEED)


def test_key_file_keeps_the_copy_table_and_fingerprint(key, tmp_path, tiny_classifier, tiny_tokenizer):
    path = save_key(key, tmp_path / "h.key")
    loaded = load_key(path)
    assert loaded.copies == key.copies and loaded.fingerprint == key.fingerprint
    assert torch.equal(loaded.horizontal.plain_of_shaken, key.horizontal.plain_of_shaken)
    one_to_one = generate_key(ShakeSettings(), tiny_classifier, tiny_tokenizer, "tiny", SEED)
    assert one_to_one.fingerprint != key.fingerprint
    data = key_to_dict(key)
    data["copies"] = data["copies"][1:]  # edit the table: the checksum catches it
    (tmp_path / "edited.key").write_text(json.dumps(data))
    (tmp_path / "edited.key").chmod(0o600)
    with pytest.raises(KeyFileError, match="modified or damaged"):
        load_key(tmp_path / "edited.key")


def test_a_version_1_key_file_still_loads(tiny_classifier, tiny_tokenizer, tmp_path):
    from operators.keyfile import _checksum

    key = generate_key(ShakeSettings(), tiny_classifier, tiny_tokenizer, "tiny", SEED)
    body = {name: value for name, value in key_to_dict(key).items() if name not in ("checksum", "copies")}
    body["version"] = 1
    path = tmp_path / "v1.key"
    path.write_text(json.dumps({**body, "checksum": _checksum(body)}))
    path.chmod(0o600)
    assert load_key(path).fingerprint == key.fingerprint

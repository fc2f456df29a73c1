"""Cluster mixing (operators/mixing.py) and its informed attack (objectives/attacks/mixing.py)."""

import copy

import pytest
import torch

from objectives.attacks.context import AttackContext
from objectives.attacks.mixing import ClusterMatchingAttack, assign_greedily
from objectives.attacks.nearest import NearestNeighbourAttack, PosteriorAttack
from objectives.attacks.suite import run_attacks
from objectives.attacks.view import CloudView, PublicKnowledge
from objectives.encoded import encode_token_ids
from objectives.leakage import ground_truth, informed_public, informed_view, measure_leakage
from objectives.models import DEFAULT_MODEL
from operators.errors import SettingsError
from operators.identity import input_embedding
from operators.implant import shake_model
from operators.key import generate_key
from operators.mixing import make_mixing
from operators.settings import MixSettings, ShakeSettings
from operators.vertical import embedding_scale

SPECIAL = [0, 1]


@pytest.fixture(scope="module")
def rows() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(400, 32, generator=g)


def test_settings_validate_and_round_trip():
    settings = ShakeSettings(1.0, (), mix=MixSettings(10, 0.5, 1.0))
    assert ShakeSettings.from_json(settings.to_json()) == settings
    assert "mix" not in ShakeSettings(1.0, ()).to_dict()  # settings without mixing keep their form
    assert not MixSettings().enabled and MixSettings(2).enabled
    for bad in ({"k": 0}, {"k": 5, "tau": 0}, {"k": 5, "noise": -1}, {"k": 5, "size": 3}, {"tau": 1}):
        with pytest.raises(SettingsError):
            ShakeSettings.from_dict({"mix": bad})


def test_each_row_mixes_itself_and_its_nearest_rows(rows):
    mixing = make_mixing(rows, MixSettings(5, 0.5), SPECIAL)
    ordinary = torch.arange(2, len(rows))
    assert torch.equal(mixing.neighbours[ordinary, 0], ordinary)  # itself first
    torch.testing.assert_close(mixing.weights.sum(dim=1), torch.ones(len(rows)))
    assert not torch.isin(mixing.neighbours[ordinary], torch.tensor(SPECIAL)).any()  # never a special row
    # the neighbours are the most similar rows by cosine
    unit = rows / rows.norm(dim=1, keepdim=True)
    similarity = unit[2] @ unit[ordinary].T
    expected = ordinary[torch.topk(similarity, 5).indices]
    assert set(mixing.neighbours[2].tolist()) == set(expected.tolist())
    mixed = mixing.mixed(rows)
    assert torch.equal(mixed[SPECIAL], rows[SPECIAL])  # special rows stay as they are
    torch.testing.assert_close(mixed[7], (mixing.weights[7][:, None] * rows[mixing.neighbours[7]]).sum(0))
    # a small temperature keeps each row its own; a large one averages its neighbours evenly
    sharp = make_mixing(rows, MixSettings(5, 1e-4), SPECIAL)
    torch.testing.assert_close(sharp.mixed(rows), rows, rtol=0, atol=1e-6)
    flat = make_mixing(rows, MixSettings(5, 10.0), SPECIAL)
    assert float(flat.own_weight()[2:].max()) < 0.25


def test_a_mixing_key_uploads_mixed_rows_with_its_noise(attack_setup):
    model, tokenizer, _, public = attack_setup
    settings = ShakeSettings(1.0, (), mix=MixSettings(10, 1.0, 0.0))
    key = generate_key(settings, model, tokenizer, DEFAULT_MODEL, b"\x05" * 32)
    shaken = input_embedding(shake_model(copy.deepcopy(model), key)).detach()
    expected = key.mixing_of(public.embedding).mixed(public.embedding)
    assert torch.equal(shaken, key.permutation.rows_to_shaken(expected))  # exactly the mix, permuted
    noisy = ShakeSettings(1.0, (), mix=MixSettings(10, 1.0, 2.0))
    key = generate_key(noisy, model, tokenizer, DEFAULT_MODEL, b"\x05" * 32)
    shaken = input_embedding(shake_model(copy.deepcopy(model), key)).detach()
    noise = key.permutation.rows_to_plain(shaken) - expected
    assert float(noise.std()) == pytest.approx(2.0 * embedding_scale(public.embedding), rel=0.02)


def test_the_informed_attacker_compares_with_the_noiseless_mix(attack_setup):
    """Without noise the mix hides nothing from who knows it (measured 1.000), while nearest rows of the
    raw public embedding are misled by it."""
    model, tokenizer, private, public = attack_setup
    settings = ShakeSettings(1.0, (), mix=MixSettings(20, 1.0, 0.0))
    key = generate_key(settings, model, tokenizer, DEFAULT_MODEL, b"\x06" * 32)
    shaken = shake_model(copy.deepcopy(model), key)
    ids = encode_token_ids(key, private[:300], key.occurrence_stream("train"))
    view = CloudView(input_embedding(shaken).detach(), ids)
    naive = run_attacks(view, public, ground_truth(key), [NearestNeighbourAttack()])
    informed = run_attacks(
        informed_view(view, key, public),
        informed_public(public, key),
        ground_truth(key),
        [ClusterMatchingAttack()],
    )
    assert informed.scores["cluster_matching"].recovery > 0.99
    assert naive.scores["nearest"].recovery < 0.9
    leakage = measure_leakage(shaken, ids, public, key)
    assert "cluster_matching" in leakage.informed.scores and leakage.bound > 0.99


def test_assignment_is_one_to_one_from_the_most_probable_pair_down():
    rows, tokens = [0, 0, 1, 1, 2], [5, 6, 5, 7, 5]
    scores = [9.0, 8.0, 10.0, 1.0, 3.0]
    assert assign_greedily(*map(torch.tensor, (rows, tokens)), torch.tensor(scores).numpy()) == {1: 5, 0: 6}


def test_one_to_one_matching_tells_apart_tokens_whose_mixed_rows_agree():
    """Two tokens with the same (mixed) row and the same frequency: the posterior names one of them for
    both shaken rows, the one-to-one matching gives each its own."""
    public_rows = torch.eye(6)
    public_rows[3] = public_rows[2]
    prior = torch.tensor([0.0, 0.0, 50, 50, 40, 30])
    public = PublicKnowledge(public_rows, prior, (0, 1))
    shaken_rows = public_rows[[0, 1, 2, 3, 4, 5]] + 0.01 * torch.randn(
        6, 6, generator=torch.Generator().manual_seed(0)
    )
    stream = [[0, 2, 3, 4, 5, 1]] * 40
    context = AttackContext(CloudView(shaken_rows, stream), public)
    posterior = PosteriorAttack().guess(context).ids
    matched = ClusterMatchingAttack().guess(context).ids
    assert posterior[2] == posterior[3]
    assert sorted(matched[[2, 3]].tolist()) == [2, 3] and matched[4] == 4 and matched[5] == 5

"""The attack suite on the default model and SST-2: what each attack must recover, and what it must not."""

import copy

import pytest
import torch

from objectives.attacks.alignment import AlignmentAttack
from objectives.attacks.frequency import FrequencyAttack
from objectives.attacks.nearest import NearestNeighbourAttack
from objectives.attacks.suite import run_attacks
from objectives.attacks.view import CloudView, GroundTruth
from objectives.encoded import encode_token_ids
from objectives.leakage import ground_truth
from objectives.models import DEFAULT_MODEL
from operators.identity import input_embedding
from operators.implant import shake_model
from operators.key import generate_key
from operators.settings import OperatorSettings, ShakeSettings, preset


def leak(attack_setup, settings: ShakeSettings, attacks=None, seed: bytes = b"\x11" * 32):
    """The suite's report (or only ``attacks``) on an upload shaken with ``settings``."""
    model, tokenizer, private, public = attack_setup
    key = generate_key(settings, model, tokenizer, DEFAULT_MODEL, seed=seed)
    shaken = shake_model(copy.deepcopy(model), key)
    view = CloudView(input_embedding(shaken).detach(), encode_token_ids(key, private))
    return run_attacks(view, public, ground_truth(key), attacks=attacks)


def chain(*ops):
    return ShakeSettings(1.0, tuple(OperatorSettings(*op) for op in ops))


def test_horizontal_only_leaks_everything_to_nearest_neighbour(attack_setup):
    report = leak(attack_setup, preset("horizontal-only"), [NearestNeighbourAttack()])
    assert report.scores["nearest"].recovery >= 0.99
    assert report.leakage >= 0.99


def test_small_gaussian_noise_hides_nothing(attack_setup):
    report = leak(attack_setup, chain(("gaussian", 0.5, 1.0)), [NearestNeighbourAttack()])
    assert report.leakage >= 0.9


def test_anchored_alignment_undoes_a_dense_linear_map(attack_setup):
    """tilt (a full rotation) then inflate: a dense invertible map, no noise."""
    report = leak(
        attack_setup,
        chain(("tilt", 1.5, 1.0), ("inflate", 1.0, 1.0)),
        [NearestNeighbourAttack(), AlignmentAttack()],
    )
    assert report.scores["nearest"].recovery < 0.1  # the map does defeat plain matching...
    assert report.scores["alignment"].recovery >= 0.9  # ...but not alignment


def test_leakage_falls_as_noise_rises(attack_setup):
    matching = [NearestNeighbourAttack(), NearestNeighbourAttack("standardized")]
    figures = [leak(attack_setup, chain(("gaussian", t, 1.0)), matching).leakage for t in (3.0, 4.5, 6.0)]
    assert figures[0] > figures[1] > figures[2], figures
    assert figures[0] > 0.8


def test_frequency_analysis_ignores_vertical_operators(attack_setup):
    """A 1:1 permutation is a substitution cipher: frequency ranks recover the same share whatever the
    vertical chain does (here ~18% of 1,000 sentences, against a prior from another split). The same
    seed gives the same permutation, so even ties in the counts break the same way."""
    plain = leak(attack_setup, preset("horizontal-only"), [FrequencyAttack()]).scores["frequency"].recovery
    strong = (
        leak(attack_setup, preset("tilt-inflate-noise"), [FrequencyAttack()]).scores["frequency"].recovery
    )
    assert plain == pytest.approx(strong, abs=1e-12)
    assert 0.1 < plain < 0.4


def test_recovery_counts_occurrences_and_skips_special_tokens():
    truth = GroundTruth(torch.tensor([0, 2, 1, 3]), torch.tensor([True, False, False, False]))
    counts = torch.tensor([100.0, 3.0, 1.0, 6.0])
    guess = torch.tensor([0, 2, 0, -1])  # right for id 1 (3 occurrences), wrong for 2 and 3
    assert truth.recovery(guess, counts) == pytest.approx(3 / 10)


def test_attack_names_are_explained_in_plain_words():
    from objectives.attacks.meanings import explain

    text = explain("tuned/informed/output/grouped_ctx_posterior")
    assert "homophone copies merged" in text and "most probable word" in text
    assert "output layer" in text and "after private tuning" in text and "(the bound)" in text
    assert "surrounding words" in explain("shaken/joint_w0.05") and "bound" not in explain("shaken/frequency")
    known = explain("shaken/informed/known_groups_joint_w0.1")
    assert "as the key groups them" in known and "surrounding words" in known and "(the bound)" in known

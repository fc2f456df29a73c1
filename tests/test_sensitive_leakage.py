"""Leakage measured on what matters: per-occurrence scoring on rare tokens and planted secrets, the
canaries, and the informed attacker's decoding of substituted text."""

import pytest
import torch

from objectives.attacks.decoding import DecodingAttack
from objectives.attacks.scoring import Occurrences, frequent_ids
from objectives.attacks.suite import run_attacks
from objectives.canaries import CANARY_SENTENCES, plant
from objectives.encoded import encode_token_ids
from objectives.leakage import Plaintext, informed_view, measure_leakage, truth_for
from objectives.models import DEFAULT_MODEL, load_as_saved
from objectives.task import TaskSpec
from objectives.trial import Fidelity, TrialRunner, TrialSettings
from objectives.tuning import TuningBudget
from operators.errors import SettingsError
from operators.identity import vocabulary_tokens
from operators.implant import shake_model
from operators.key import generate_key
from operators.settings import ShakeSettings, SubstituteSettings

# --- scoring --------------------------------------------------------------------------------------------


def test_occurrences_are_scored_per_subset_against_what_the_owner_wrote():
    # ids 0-1 special; 2 and 3 frequent; 4-9 rare. One private sentence and one planted canary.
    frequent = torch.zeros(10, dtype=torch.bool)
    frequent[[2, 3]] = True
    original = [[0, 2, 4, 5, 1], [0, 3, 6, 7, 1]]
    shaken = [[0, 2, 8, 5, 1], [0, 3, 9, 7, 1]]  # 4 and 6 were substituted by 8 and 9
    planted = [[False] * 5, [True] * 5]
    secret = [[False] * 5, [False, False, True, True, False]]
    occurrences = Occurrences.of(shaken, original, [0, 1], frequent, planted, secret)
    assert occurrences.counts() == {"all": 3, "rare": 2, "canary": 2}
    identity = torch.arange(10)  # a guess that reads every id as itself
    recovery = occurrences.score_ids(identity)
    assert (recovery.all, recovery.rare, recovery.canary) == (2 / 3, 1 / 2, 1 / 2)
    unchanged = occurrences.unchanged(identity)
    assert unchanged == recovery
    decoded = torch.tensor([0, 2, 4, 5, 1, 0, 3, 6, 7, 1])  # a per-occurrence guess that undoes both
    assert occurrences.score(decoded).to_dict() == {"all": 1.0, "rare": 1.0, "canary": 1.0}
    prior = torch.tensor([50.0, 50, 9, 7, 3, 5, 1, 0, 0, 0])  # 2 most frequent; 5 the most frequent rare
    floors = occurrences.floors(prior, [0, 1], frequent)
    assert (floors.all, floors.rare, floors.canary) == (1 / 3, 1 / 2, 0.0)


def test_rare_means_outside_the_most_frequent_public_tokens():
    prior = torch.tensor([100.0, 9, 8, 7, 0])
    assert frequent_ids(prior, [0], rank=2).tolist() == [False, True, True, False, False]
    assert frequent_ids(prior, [0], rank=10).tolist() == [False, True, True, True, False]  # never unseen


# --- canaries -------------------------------------------------------------------------------------------


def test_canaries_mark_the_letters_and_digits_of_their_secrets_only(minilm_tokenizer):
    canaries = plant(minilm_tokenizer, seed=3, max_length=64)
    again = plant(minilm_tokenizer, seed=3, max_length=64)
    assert canaries == again and plant(minilm_tokenizer, seed=4, max_length=64) != canaries
    assert len(canaries) == CANARY_SENTENCES
    tokens = [minilm_tokenizer.convert_ids_to_tokens(ids) for ids in canaries.token_ids]
    marked = [
        t
        for row, marks in zip(tokens, canaries.secret, strict=True)
        for t, m in zip(row, marks, strict=True)
        if m
    ]
    assert len(marked) == canaries.secret_tokens > 4 * CANARY_SENTENCES
    assert all(any(c.isalnum() for c in t) for t in marked)  # never punctuation
    assert not {"[CLS]", "[SEP]", "my", "name", "is", "phone", "@", "street"} & set(marked)
    assert sum(any(c.isdigit() for c in t) for t in marked) > len(marked) / 3  # numbers are secrets too


# --- decoding substituted text --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def substitution_setup(attack_setup):
    model, tokenizer, private, public = attack_setup
    tokens = vocabulary_tokens(tokenizer, public.vocab_size)

    def upload(settings: SubstituteSettings, sentences: int = 500):
        fresh = load_as_saved(DEFAULT_MODEL)
        key = generate_key(
            ShakeSettings(1.0, (), substitute=settings), fresh, tokenizer, "m", b"d" * 32, public.prior
        )
        key = key.with_mechanism(public.embedding, tokens)
        shaken = shake_model(fresh, key)
        plain = private[:sentences]
        return key, shaken, encode_token_ids(key, plain), plain

    return upload, public


def decoded(substitution_setup, settings):
    """The decoding attack's figures on a substituted upload, and what reached the cloud unchanged."""
    upload, public = substitution_setup
    key, shaken, shaken_ids, plain = upload(settings)
    from objectives.attacks.view import CloudView
    from operators.identity import input_embedding

    view = CloudView(input_embedding(shaken).detach(), shaken_ids)
    truth = truth_for(key, view, public, Plaintext(plain))
    report = run_attacks(informed_view(view, key, public), public, truth, [DecodingAttack()])
    score = report.scores["decoding"]
    unchanged = truth.occurrences.unchanged(truth.plain_of_shaken)
    floor = truth.occurrences.floors(public.prior, public.special_ids, public.frequent())
    return score, unchanged, floor


def test_decoding_recovers_nearly_everything_at_a_high_epsilon(substitution_setup):
    score, unchanged, _ = decoded(substitution_setup, SubstituteSettings(12.0, "clusters", 20, 0))
    assert score.recovery >= 0.9
    assert score.recovery >= unchanged.all  # never worse than reading the upload as it is


def test_decoding_reads_context_through_small_clusters(substitution_setup):
    """Fixed partitions leak through context (CusText's weakness): most tokens come back where the
    upload keeps few of them."""
    score, unchanged, _ = decoded(substitution_setup, SubstituteSettings(2.0, "clusters", 20, 0))
    assert unchanged.all < 0.2 and score.recovery > unchanged.all + 0.4


def test_decoding_gains_little_at_a_low_epsilon(substitution_setup):
    score, unchanged, floor = decoded(substitution_setup, SubstituteSettings(1.0, "vocabulary", 20, 0))
    assert unchanged.all < 0.01
    # nothing comes through the draws: context alone names some common words (a few points over always
    # naming the most common one), and no rare token
    assert score.recovery <= unchanged.all + floor.all + 0.03
    assert score.rare <= unchanged.rare + 0.01


def test_a_substituting_key_is_only_scored_against_its_plaintext(substitution_setup):
    upload, public = substitution_setup
    key, shaken, shaken_ids, plain = upload(SubstituteSettings(4.0, "vocabulary", 20, 300), sentences=50)
    with pytest.raises(SettingsError, match="scored against the plaintext"):
        measure_leakage(shaken, shaken_ids, public, key)


# --- in a trial -----------------------------------------------------------------------------------------

TINY = Fidelity(train_size=96, eval_size=48, max_length=24, compare_recovery=False)
BUDGET = TuningBudget(steps=3, batch_size=8, learning_rate=1e-4)


@pytest.fixture(scope="module")
def runner(sst2):
    return TrialRunner(TaskSpec.sst2(sst2), fidelity=TINY)


def test_a_trial_states_the_sensitive_figures_and_canaries_never_reach_accuracy(runner, monkeypatch):
    settings = TrialSettings(
        ShakeSettings(1.0, (), substitute=SubstituteSettings(4.0, "vocabulary", 20, 300)), BUDGET
    )
    first = runner.run(settings, key_seed=1, tuning_seed=1)
    data = first.to_dict()
    for name in (
        "leakage_bound_rare",
        "canary_recovery",
        "blind_floor",
        "tokens_unchanged",
        "recovered_accuracy",
    ):
        assert data[name] is not None, name
    assert "shaken/informed/decoding" in first.bound_attacks
    assert first.canary_recovery < 0.10 and first.leakage_bound_rare < 0.10  # secrets are substituted
    assert first.leakage_bound >= first.tokens_unchanged - 0.01  # the kept words are readable
    sensitive = first.leakage("bound", "sensitive")
    assert sensitive == max(first.leakage_bound_rare, first.canary_recovery)
    assert first.leakage("bound", "all") == first.leakage_bound
    # other canaries: other canary figures, the very same accuracy (they are never tuned on)
    other = plant(runner.tokenizer, seed=99, max_length=TINY.max_length)
    monkeypatch.setattr(runner, "canaries", lambda seed: other)
    second = runner.run(settings, key_seed=1, tuning_seed=1)
    assert second.accuracy == first.accuracy and second.recovered_accuracy == first.recovered_accuracy
    assert (
        second.leakage_report.exposure.occurrences["canary"]
        != first.leakage_report.exposure.occurrences["canary"]
    )


def test_repeated_measurements_average_accuracy_and_keep_the_worst_leakage(runner):
    import dataclasses

    from objectives.repeated import Repeated

    settings = TrialSettings(ShakeSettings(1.0, ()), BUDGET)
    measured = runner.run(settings, key_seed=2, tuning_seed=2)
    one = dataclasses.replace(measured, leakage_bound_rare=0.2, canary_recovery=0.5)
    two = dataclasses.replace(one, accuracy=one.accuracy - 0.1, leakage_bound_rare=0.9, canary_recovery=0.1)
    summary = Repeated((2, 3), (one, two)).to_dict()
    assert summary["seeds"] == [2, 3] and len(summary["per_seed"]) == 2
    assert summary["accuracy"] == pytest.approx(one.accuracy - 0.05)
    assert summary["accuracy_gap"] == pytest.approx(one.accuracy_gap + 0.05)
    assert (summary["leakage_bound_rare"], summary["canary_recovery"]) == (0.9, 0.5)  # each at its worst
    assert Repeated((2,), (one,)).to_dict() == {**one.to_dict(), "seeds": [2]}


def test_a_mask_tells_nothing_of_rare_words_and_kept_meaning_gives_them_back(substitution_setup):
    """``mask`` writes one token for every rare one: what comes back is what context alone names. ``kept``
    at a high epsilon writes a common word near each rare one, and the decoder reads many back."""
    words = ("numbers", "words")
    masked, unchanged, _ = decoded(substitution_setup, SubstituteSettings(1.0, "mask", 20, 1000, words))
    kept, _, _ = decoded(substitution_setup, SubstituteSettings(256.0, "kept", 20, 1000, words))
    assert unchanged.rare == 0.0 and masked.rare <= 0.01
    assert kept.rare > masked.rare + 0.1

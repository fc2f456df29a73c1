"""The objective function: one setting in, accuracy, cost and leakage out; deterministic per seed."""

import json

import pytest

from objectives.data import DataError
from objectives.task import DataSource, TaskSpec
from objectives.trial import Fidelity, TrialRunner, TrialSettings
from objectives.tuning import TuningBudget
from operators.errors import SettingsError
from operators.settings import preset

TINY = Fidelity(train_size=64, eval_size=48, max_length=24)
BUDGET = TuningBudget(steps=3, batch_size=8, learning_rate=1e-4)


@pytest.fixture(scope="module")
def runner(sst2):
    return TrialRunner(TaskSpec.sst2(sst2), fidelity=TINY)


def measured(result):
    data = result.to_dict()
    data.pop("seconds")
    data.pop("peak_memory_mb")
    data.pop("leakage_stages")  # every attack's figure is in "attacks"; the stages also hold its seconds
    return data


def test_a_trial_runs_end_to_end_and_repeats_exactly(runner):
    settings = TrialSettings(preset("medium"), BUDGET)
    first = runner.run(settings, key_seed=5, tuning_seed=5)
    again = runner.run(settings, key_seed=5, tuning_seed=5)
    assert measured(first) == measured(again)
    assert 0.0 <= first.accuracy <= 1.0 and first.plaintext_accuracy is not None
    labels = runner.data.eval_labels  # the baseline: always the training slice's most common label
    majority = max(set(runner.data.train_labels), key=runner.data.train_labels.count)
    assert first.baseline_accuracy == sum(label == majority for label in labels) / len(labels)
    assert set(first.seconds) >= {"shaking", "attacks", "tuning", "inference"}
    assert first.peak_memory_mb > 0
    assert set(first.attacks) == {
        "shaken/frequency",
        "shaken/context",
        "shaken/nearest",
        "shaken/nearest_standardized",
        "shaken/posterior",
        "shaken/joint_w0.1",
        "shaken/alignment",
        "shaken/relational",
    }
    assert set(first.bound_attacks) == {
        "shaken/informed/nearest",
        "shaken/informed/nearest_standardized",
        "shaken/informed/posterior",
        "shaken/informed/joint_w0.1",
    }
    # the bound is never below the suite's figure, and is set by one of the two sets of attacks
    assert first.leakage_bound == max(*first.attacks.values(), *first.bound_attacks.values())
    assert first.leakage_bound >= first.leakage_attacks == max(first.attacks.values())
    other_seed = runner.run(settings, key_seed=6, tuning_seed=5)
    assert other_seed.key_fingerprint != first.key_fingerprint


def test_horizontal_only_private_tuning_matches_plaintext_exactly(runner):
    result = runner.run(TrialSettings(preset("horizontal-only"), BUDGET), key_seed=1)
    assert result.accuracy == result.plaintext_accuracy
    assert result.accuracy_gap == 0.0
    assert result.leakage_attacks >= 0.99 and result.leakage_bound >= 0.99


def test_stopping_after_leakage_skips_training(runner):
    result = runner.run(
        TrialSettings(preset("light"), BUDGET), key_seed=2, stop=lambda leakage: leakage.bound > 0.5
    )
    assert result.stopped_early and result.accuracy is None and result.accuracy_gap is None
    assert "tuning" not in result.seconds and result.leakage("bound") > 0.5
    assert result.cost_gflops > 0  # the setting's cost is known without running it


def test_cost_is_deterministic_and_follows_the_budget(runner):
    def cost(budget, shaking="medium"):
        return runner.flops(TrialSettings(preset(shaking), budget), seed=0)

    base = cost(BUDGET)
    assert base == cost(BUDGET)
    longer = cost(TuningBudget(steps=6, batch_size=8, learning_rate=1e-4))
    assert 1.5 * base["tuning"] < longer["tuning"] < 2.5 * base["tuning"]  # batch widths vary
    cheaper = cost(TuningBudget(steps=3, batch_size=8, learning_rate=1e-4, mode="embeddings+head"))
    assert cheaper["tuning"] == pytest.approx(base["tuning"] * 2 / 3)
    assert cost(BUDGET, "horizontal-only")["implant"] == 0.0 < base["implant"]


def test_attacking_the_tuned_model_adds_a_stage(sst2):
    runner = TrialRunner(TaskSpec.sst2(sst2), fidelity=Fidelity(64, 48, 24, attack_tuned=True))
    result = runner.run(TrialSettings(preset("horizontal-only"), BUDGET))
    assert "tuned/nearest" in result.attacks and "shaken/nearest" in result.attacks
    assert "tuned/informed/nearest" in result.bound_attacks
    assert result.leakage_attacks == max(result.attacks.values())


def test_mismatched_label_sets_are_refused(tmp_path, sst2):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    (tmp_path / "eval.tsv").write_text("sentence\tlabel\nmeh\t2\n")
    task = TaskSpec(
        DataSource(str(tmp_path / "train.tsv")),
        DataSource(str(tmp_path / "eval.tsv")),
        DataSource(str(sst2 / "dev.tsv")),
    )
    with pytest.raises(DataError, match=r"evaluation labels \['2'\] never occur in the training slice"):
        _ = TrialRunner(task, fidelity=TINY).data


def test_data_source_ranges():
    source = DataSource.parse("data/dev.tsv[1000:]")
    assert (source.location, source.start, source.stop) == ("data/dev.tsv", 1000, None)
    assert str(DataSource.parse("x.csv[0:5]")) == "x.csv[0:5]"
    assert DataSource.parse("hf:glue:sst2:train").is_hub


def test_hub_sources_fail_clearly_offline():
    with pytest.raises(DataError, match="cannot load hub dataset .glue:sst2:train.*use local files"):
        DataSource.parse("hf:glue:sst2:train").load()


def test_trial_settings_file_round_trip(tmp_path):
    settings = TrialSettings(preset("tilt-inflate-noise"), TuningBudget(steps=40, mode="embeddings+head"))
    path = settings.save(tmp_path / "s.json")
    assert TrialSettings.load(path) == settings
    data = json.loads(path.read_text())
    data["tuning"]["epochs"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(SettingsError, match="unknown field.*epochs"):
        TrialSettings.load(path)
    data["tuning"] = {"mode": "adapters"}
    path.write_text(json.dumps(data))
    with pytest.raises(SettingsError, match="mode must be one of"):
        TrialSettings.load(path)


def test_a_homophonic_trial_attacks_the_groups_and_counts_the_larger_embedding(sst2):
    from operators.settings import HomophoneSettings, OperatorSettings, ShakeSettings

    runner = TrialRunner(
        TaskSpec.sst2(sst2),
        fidelity=Fidelity(train_size=64, eval_size=48, max_length=24, check_recovered=True),
    )
    chain = (OperatorSettings("gaussian", 0.5, 1.0),)
    flat = TrialSettings(ShakeSettings(1.0, chain, HomophoneSettings(0.005, 1.0)), BUDGET)
    plain = TrialSettings(ShakeSettings(1.0, chain), BUDGET)
    result, baseline = (
        runner.run(flat, key_seed=1, tuning_seed=1),
        runner.run(plain, key_seed=1, tuning_seed=1),
    )
    added = runner.added_rows(flat.shaking)
    assert added > 10
    assert {"shaken/grouped_frequency", "shaken/grouped_context", "shaken/grouped_alignment"} <= set(
        result.attacks
    )
    # the bound holds the key's copy groups, so it attacks the true groups, not estimated ones
    assert {"shaken/informed/known_groups_nearest", "shaken/informed/known_groups_frequency"} <= set(
        result.bound_attacks
    )
    assert not any("informed/grouped_" in name for name in result.bound_attacks)
    assert result.leakage_attacks == max(result.attacks.values())
    assert result.flops["added_rows"] > 0 and "added_rows" not in baseline.flops
    assert result.flops["implant"] > baseline.flops["implant"]
    assert result.embedding_memory_mb - baseline.embedding_memory_mb == pytest.approx(
        added * 384 * 16 / 2**20
    )
    # private inference draws copies at random; the recovered model averages them: close, not equal
    assert abs(result.recovered_accuracy - result.accuracy) <= 0.1
    assert baseline.recovered_accuracy == baseline.accuracy  # 1:1 recovery is exact


def test_a_small_evaluation_needs_a_wider_margin_and_skewed_slices_are_warned_about():
    """Issue 26 (7): NOT LEARNT allows for the evaluation's noise; a first-rows slice of a file sorted by
    label is named as skewed."""
    from objectives.trial import LEARNT_MARGIN, learnt_margin, not_learnt, slice_skew

    assert learnt_margin(0.5, None) == LEARNT_MARGIN == learnt_margin(0.5, 100_000)
    assert learnt_margin(0.5, 32) == pytest.approx(2 * (0.25 / 32) ** 0.5)
    assert not_learnt(0.62, 0.5, 32) and not not_learnt(0.62, 0.5, 10_000)
    labels = ["a"] * 50 + ["b"] * 50 + ["c"] * 50 + ["d"] * 50  # a file sorted by label
    warning = slice_skew("evaluation", "sorted.tsv", labels[:32], labels)
    assert "skewed: 100% of it has one label, which is 25% of the source" in warning
    mixed = ["a", "b", "c", "d"] * 50
    assert slice_skew("evaluation", "mixed.tsv", mixed[:32], mixed) == ""
    assert slice_skew("evaluation", "whole.tsv", labels, labels) == ""

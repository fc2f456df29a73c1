"""Decoupled evaluation: leakage reused per shaking, screening before tuning, successive halving, and a
trial budget that counts tuned trials only."""

import optuna
import pytest
from optuna.trial import TrialState

from adaptive.budget import screened_out
from adaptive.screening import crowding, dominating_trial, front_ranks, known_leakage, promoted
from adaptive.study import (
    Caps,
    StudyConfig,
    feasible_front,
    measurement_seed,
    open_study,
    shaking_key,
)
from adaptive.transfer import transfer_leakage
from adaptive.trials import tuned
from objectives.leakage import StagedLeakage
from objectives.rungs import Rungs, rung_steps
from objectives.task import TaskSpec
from objectives.trial import Fidelity, TrialRunner, TrialSettings
from objectives.tuning import TuningBudget
from operators.settings import preset
from storage.engine import optuna_storage
from tests.cli import run, tiny_search

TINY = Fidelity(train_size=48, eval_size=32, max_length=16)


@pytest.fixture(scope="module")
def runner(sst2):
    return TrialRunner(TaskSpec.sst2(sst2), fidelity=TINY)


def test_rungs_lie_at_a_third_of_the_steps():
    assert rung_steps(150) == (50,)
    assert rung_steps(80) == (27,)
    assert rung_steps(81, rungs=2) == (9, 27)
    assert rung_steps(2) == (1,) and rung_steps(1) == ()


def test_non_dominated_sorting_and_promotion():
    # minimised: (1, 1) and (0, 2) are both on the first front, (2, 2) behind (1, 1)
    assert front_ranks([(1, 1), (0, 2), (2, 2), (3, 3)]) == [0, 0, 1, 2]
    # (rung accuracy, cost, leakage): trial 0 is better on everything than 1..5
    competitors = {n: (0.6 - 0.01 * n, 10.0 + n, 0.5) for n in range(6)}
    assert promoted(0, competitors) and promoted(1, competitors)  # the top 6 // 3 = 2 go on
    assert not promoted(2, competitors) and not promoted(5, competitors)
    # while fewer than three reached the rung, a trial goes on unless another dominates it
    assert promoted(0, {0: (0.6, 1.0, 0.1)})
    assert not promoted(1, {0: (0.6, 1.0, 0.1), 1: (0.5, 2.0, 0.2)})
    assert promoted(1, {0: (0.6, 1.0, 0.1), 1: (0.5, 0.5, 0.2)})  # cheaper: not dominated
    # a cheaper, more private setting is on the first front whatever its accuracy: it goes on ahead of
    # more accurate settings that trial 0 dominates
    field = {0: (0.8, 5.0, 0.5), 1: (0.5, 1.0, 0.1), 2: (0.7, 6.0, 0.6), 3: (0.75, 7.0, 0.7)}
    field.update({4: (0.6, 8.0, 0.8), 5: (0.55, 9.0, 0.9)})
    assert promoted(1, field) and promoted(0, field) and not promoted(3, field)
    # within a front the points at the ends of an objective rank first (crowding distance)
    # point (1, 2): neighbours 0 and 2 on the first objective, 1.5 and 3 on the second (range 3 each)
    expected = [float("inf"), 2 / 3 + 1.5 / 3, 2 / 3 + 2 / 3, float("inf")]
    assert crowding([(0, 3), (1, 2), (2, 1.5), (3, 0)]) == pytest.approx(expected)


def test_a_rung_that_promotes_changes_nothing_and_one_that_does_not_stops_tuning(runner):
    settings = TrialSettings(preset("light"), TuningBudget(steps=6, batch_size=8, learning_rate=1e-4))
    plain = runner.run(settings, key_seed=3, tuning_seed=3)
    seen = []
    promoted_run = runner.run(
        settings, key_seed=3, tuning_seed=3, rungs=Rungs((2,), lambda steps, acc: seen.append(steps) or True)
    )
    assert seen == [2] and promoted_run.accuracy == plain.accuracy  # scoring a rung leaves training as it was
    assert set(promoted_run.accuracy_by_steps) == {"2", "6"}
    assert promoted_run.accuracy_by_steps["6"] == plain.accuracy
    stopped = runner.run(settings, key_seed=3, tuning_seed=3, rungs=Rungs((2,), lambda steps, acc: False))
    assert stopped.stopped_early and stopped.accuracy is None and stopped.stopped_at_steps == 2
    assert stopped.accuracy_by_steps == {"2": promoted_run.accuracy_by_steps["2"]}
    assert stopped.flops == plain.flops and stopped.leakage_bound == plain.leakage_bound


def test_known_leakage_is_reused_exactly(runner):
    settings = TrialSettings(preset("light"), TuningBudget(steps=2, batch_size=8, learning_rate=1e-4))
    first = runner.run(settings, key_seed=4)
    stages = StagedLeakage.from_dict(first.to_dict()["leakage_stages"])
    assert stages.to_dict() == first.leakage_report.to_dict()
    longer = TrialSettings(settings.shaking, TuningBudget(steps=4, batch_size=8, learning_rate=1e-4))
    again = runner.run(longer, key_seed=4, known_leakage=stages)
    assert again.leakage_reused and not first.leakage_reused
    assert (again.leakage_bound, again.attacks) == (first.leakage_bound, first.attacks)
    assert again.key_fingerprint == first.key_fingerprint
    assert "attacks" in first.seconds and "attacks" not in again.seconds  # no attack ran


def test_the_key_seed_depends_on_the_shaking_not_the_tuning_budget():
    short = TrialSettings(preset("light"), TuningBudget(steps=2))
    long = TrialSettings(preset("light"), TuningBudget(steps=300, learning_rate=1e-4))
    assert shaking_key(short) == shaking_key(long)
    assert measurement_seed(0, short) == measurement_seed(0, long) != measurement_seed(1, short)
    assert measurement_seed(0, short) != measurement_seed(0, TrialSettings(preset("medium")))


def test_halving_records_rungs_and_the_budget_counts_tuned_trials(sst2, tmp_path):
    storage = f"sqlite:///{tmp_path / 'halving.db'}"
    result = run(
        "optimize", "--study", "halving", "--storage", storage, "--trials", "3", "--seed", "1",
        *tiny_search(sst2, "3,6", strategy="halving"),
    )  # fmt: skip
    study = optuna.load_study(study_name="halving", storage=optuna_storage(storage))
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert result["strategy"] == "halving" and result["tuned"] == 3 == sum(tuned(t) for t in trials)
    for trial in trials:
        if not tuned(trial):  # screened before tuning (dominated): no rung reached, not counted
            assert trial.user_attrs["screened"] and "rung_accuracy" not in trial.user_attrs
            continue
        rung = trial.user_attrs["rung_accuracy"]
        assert len(rung) == 1 and list(trial.user_attrs["accuracy_by_steps"].values())[0] == rung[0]
        if trial.user_attrs["promoted"] == [False]:  # stopped at the rung: its score is the objective
            assert trial.user_attrs["stopped_early"] and trial.values[0] == rung[0]
            assert trial.user_attrs["stopped_at_steps"] in (1, 2)
        else:
            assert len(trial.user_attrs["accuracy_by_steps"]) == 2 and not trial.user_attrs["stopped_early"]
    assert trials[0].user_attrs["promoted"] == [True]  # the first trial leads its rung
    assert result["measured"] == sum(t.user_attrs.get("promoted") == [True] for t in trials) >= 1


def test_a_shaking_measured_once_is_not_attacked_again_with_another_budget(sst2, tmp_path):
    storage = f"sqlite:///{tmp_path / 'screened.db'}"
    common = ["--storage", storage, *tiny_search(sst2, "2,4", strategy="screened")]
    run("optimize", "--study", "reuse", "--trials", "1", *common)
    reuse = optuna.load_study(study_name="reuse", storage=optuna_storage(storage))
    first = reuse.trials[0]
    params = {**first.params, "tuning.steps": 4 if first.params["tuning.steps"] == 2 else 2}
    reuse.enqueue_trial(params)
    run("optimize", "--study", "reuse", "--trials", "1", *common[:2])
    second = optuna.load_study(study_name="reuse", storage=optuna_storage(storage)).trials[1]
    assert (
        second.user_attrs["leakage_reused"]
        and second.user_attrs["shaking_key"] == first.user_attrs["shaking_key"]
    )
    assert second.values[2] == first.values[2] and second.user_attrs["attacks"] == first.user_attrs["attacks"]
    assert known_leakage(reuse, first.user_attrs["shaking_key"]) is not None


def test_a_new_study_learns_which_shakings_broke_the_leakage_cap_on_the_same_model(sst2):
    config = StudyConfig("m", TaskSpec.sst2(sst2), TINY, caps=Caps(max_leakage=0.1))
    source = open_study("source", optuna.storages.InMemoryStorage(), config, "random")
    for leakage in (0.9, 0.12):  # far over the cap, and within the transfer margin of it
        trial = source.ask()
        settings = config.space.suggest(trial)
        trial.set_user_attr("settings", settings.to_dict())
        source.tell(trial, [0.5, 10.0, leakage])
    target = open_study("target", optuna.storages.InMemoryStorage(), config, "tpe")
    assert transfer_leakage(target, source, config, lambda settings: 42.0) == 1
    (added,) = target.trials
    assert added.values == [0.0, 42.0, 0.9] and added.constraints["leakage"] == pytest.approx(0.8)
    assert added.user_attrs["transferred_from"] == "source#0" and "leakage_stages" not in added.user_attrs
    assert not tuned(added) and feasible_front(target) == [] and screened_out(target) == 0
    assert transfer_leakage(target, source, config, lambda settings: 42.0) == 0  # known already
    other_model = StudyConfig("other", TaskSpec.sst2(sst2), TINY, caps=Caps(max_leakage=0.1))
    fresh = open_study("fresh", optuna.storages.InMemoryStorage(), other_model, "tpe")
    assert transfer_leakage(fresh, source, other_model, lambda settings: 42.0) == 0


def test_a_candidate_is_screened_out_only_by_a_cheaper_more_private_and_more_accurate_trial():
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.9, 10.0, 0.1], constraints={"leakage": -0.1}))
    asked = []

    def optimistic(value):
        return lambda: asked.append(value) or value

    (better,) = study.trials
    assert dominating_trial(study, 20.0, 0.2, optimistic(0.8)).number == better.number
    assert dominating_trial(study, 20.0, 0.2, optimistic(0.895)) is None  # within a point: may tie
    assert dominating_trial(study, 5.0, 0.2, optimistic(0.5)) is None  # the candidate is cheaper
    assert asked == [0.8, 0.895]  # no plaintext reference asked for when nothing could dominate
    study.add_trial(optuna.trial.create_trial(values=[0.95, 1.0, 0.0], constraints={"leakage": 0.5}))
    assert dominating_trial(study, 5.0, 0.2, optimistic(0.5)) is None  # infeasible trials do not count

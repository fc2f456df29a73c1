"""The search: studies in SQLite with three objectives, resume, caps as constraints, selection, review."""

import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from adaptive.screening import SCREEN_LIMIT
from adaptive.selection import Candidate, choose, decide
from adaptive.space import SearchSpace
from adaptive.study import DEFAULT_MAX_LEAKAGE, DIRECTIONS, Caps, feasible_front, study_config
from objectives.trial import TrialSettings
from objectives.tuning import TuningBudget
from operators.errors import SettingsError
from operators.settings import preset
from storage.engine import optuna_storage
from storage.repository import Repository
from tests.cli import remember_seed, run, tiny_search


def tiny(sst2, storage, study, *extra, recovery="0"):
    """optimize at the smallest fidelity, with 2 or 4 tuning steps (and ``recovery`` training steps)."""
    capped = "--max-leakage" in extra
    options = tiny_search(sst2, "2,4", capped, recovery=recovery)
    return run("optimize", "--study", study, "--storage", storage, *options, *extra)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'studies.db'}"


@pytest.fixture(scope="module")
def first_study(sst2, storage):
    return tiny(sst2, storage, "first", "--trials", "4", "--seed", "3", recovery="0,3")


def test_study_is_stored_with_three_objectives_and_resumes(sst2, storage, first_study, tmp_path):
    assert first_study["trials"] == 4 and first_study["measured"] == 4 and first_study["pareto"]
    study = optuna.load_study(study_name="first", storage=optuna_storage(storage))
    assert [d.name.lower() for d in study.directions] == list(DIRECTIONS)
    # the default figure: the bound on what matters, the worse of rare tokens and planted secrets
    assert study.metric_names == ["accuracy", "cost_gflops", "leakage_sensitive_bound"]
    trial = study.trials[0]
    attrs = trial.user_attrs
    assert set(attrs) >= {"attacks", "accuracy_gap", "seconds", "key_fingerprint", "settings", "blind_floor"}
    assert attrs["leakage_measure"] == "bound" and attrs["leakage_objective"] == "sensitive"
    assert trial.values[2] == max(attrs["leakage_bound_rare"], attrs["canary_recovery"])
    assert attrs["leakage_bound"] >= attrs["leakage_attacks"]
    recovered = [t for t in study.trials if t.params["recovery.steps"] == 3]  # searched end to end
    assert recovered and all("accuracy_without_recovery" in t.user_attrs for t in recovered)

    again = run(
        "optimize", "--study", "first", "--storage", storage, "--trials", "2"
    )  # stored options reused
    assert again["trials"] == 6 and again["trials_this_run"] == 2
    params = [
        json.dumps(t.params, sort_keys=True)
        for t in optuna.load_study(study_name="first", storage=optuna_storage(storage)).trials
    ]
    assert len(set(params)) == 6  # the resumed run did not replay the first run's draws

    chosen = run("select", "--study", "first", "--storage", storage, "--out", str(tmp_path / "chosen.json"))
    assert chosen["trial"] in [row["trial"] for row in again["pareto"]]
    key = run("keygen", "--settings", chosen["out"], "--out", str(tmp_path / "owner.key"))
    remember_seed(tmp_path / "owner.key")
    assert key["settings"]["coverage"] == pytest.approx(chosen["settings"]["coverage"])


def test_leakage_cap_stops_trials_before_training(sst2, storage):
    # one tuned trial asked for: the run gives up after SCREEN_LIMIT candidates all screened out
    result = tiny(sst2, storage, "capped", "--trials", "1", "--max-leakage", "0.05")
    study = optuna.load_study(study_name="capped", storage=optuna_storage(storage))
    assert len(study.trials) == SCREEN_LIMIT == result["screened"] == result["stopped_early"]
    assert result["tuned"] == 0 and result["pareto"] == []
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE  # recorded, not dropped
        assert trial.user_attrs["stopped_early"] and "tuning" not in trial.user_attrs["seconds"]
        assert trial.user_attrs["screened"] == "leakage over the cap"
        assert trial.constraints["leakage"] > 0 and trial.values[0] == 0.0
    error = run("select", "--study", "capped", "--storage", storage, ok=False)["error"]
    assert "no measured trial of 'capped' is feasible within max_leakage 0.05" in error


def test_a_new_study_gets_the_default_leakage_cap_unless_its_owner_opts_out(storage):
    created = run("optimize", "--study", "defaulted", "--storage", storage, "--trials", "0")
    assert created["caps"]["max_leakage"] == DEFAULT_MAX_LEAKAGE
    config = study_config(optuna.load_study(study_name="defaulted", storage=optuna_storage(storage)))
    assert config.caps.max_leakage == DEFAULT_MAX_LEAKAGE and config.leakage_measure == "bound"
    opted = run("optimize", "--study", "open", "--storage", storage, "--trials", "0", "--no-leakage-cap")
    assert opted["caps"]["max_leakage"] is None
    both = ["--max-leakage", "0.2", "--no-leakage-cap"]
    error = run("optimize", "--study", "both", "--storage", storage, "--trials", "0", *both, ok=False)
    assert "not both" in error["error"]


def test_resuming_with_other_measurements_is_refused(sst2, storage, first_study):
    error = run("optimize", "--study", "first", "--storage", storage, "--train-size", "99", ok=False)["error"]
    assert "made with another fidelity" in error


def test_warm_start_enqueues_the_earlier_front(sst2, storage, first_study):
    front = feasible_front(optuna.load_study(study_name="first", storage=optuna_storage(storage)))
    tiny(sst2, storage, "warm", "--trials", str(len(front)), "--warm-start", "first")
    study = optuna.load_study(study_name="warm", storage=optuna_storage(storage))
    sources = sorted(t.user_attrs.get("warm_start", "") for t in study.trials)
    assert sources == sorted(f"first#{t.number}" for t in front)


def test_known_settings_are_enqueued_first(sst2, storage, tmp_path):
    known = TrialSettings(preset("light"), TuningBudget(steps=2, batch_size=8, learning_rate=1e-4))
    (tmp_path / "known.json").write_text(json.dumps([known.to_dict()]))
    tiny(sst2, storage, "enqueued", "--trials", "1", "--enqueue", str(tmp_path / "known.json"))
    trial = optuna.load_study(study_name="enqueued", storage=optuna_storage(storage)).trials[0]
    assert trial.user_attrs["enqueued"] == "known.json#0"
    measured = TrialSettings.from_dict(trial.user_attrs["settings"])
    assert measured.shaking == known.shaking and measured.tuning.steps == 2


def test_studies_report_and_selection_history(storage, first_study, tmp_path):
    listing = {s["study"]: s for s in run("studies", "--storage", storage)["studies"]}
    assert listing["first"]["trials"] >= 4 and listing["first"]["front_size"] >= 1
    page = run("report", "--study", "first", "--storage", storage, "--out", str(tmp_path / "report"))[
        "report"
    ]
    html = Path(page).read_text()
    assert "plotly" in html and "Feasible Pareto front" in html and "<td>" in html
    run(
        "select",
        "--study",
        "first",
        "--storage",
        storage,
        "--policy",
        "knee",
        "--out",
        str(tmp_path / "k.json"),
    )
    history = Repository(storage).selections("first")
    assert [s.policy for s in history][-1] == "knee" and len(history) >= 2


def test_a_study_searches_substitution_under_the_default_cap_on_what_matters(sst2, storage, tmp_path):
    """With substitution on, trials are capped by the default on the sensitive figure (rare tokens and
    planted secrets); the selection states those figures and the all-token one beside them."""
    options = tiny_search(sst2, "2", leakage_cap=True)
    at = options.index("--substitute")
    del options[at : at + 2]
    made = run(
        "optimize", "--study", "subst", "--storage", storage, "--trials", "1", "--seed", "5",
        *options, "--substitute", "on", "--keep-top", "300", "--candidates", "mask",
        "--operators", "gaussian",
    )  # fmt: skip
    # mask: the first trial is under the cap (drawn candidates at a sampled epsilon can take several trials
    # over it, each attacked in full; they are tested in test_sensitive_leakage.py)
    assert made["caps"]["max_leakage"] == DEFAULT_MAX_LEAKAGE == 0.05
    study = optuna.load_study(study_name="subst", storage=optuna_storage(storage))
    for trial in study.trials:
        attrs = trial.user_attrs
        substitute = TrialSettings.from_dict(attrs["settings"]).shaking.substitute
        assert (substitute.keep_top, substitute.candidates) == (300, "mask")
        assert "shaken/informed/decoding" in attrs["bound_attacks"]
        assert trial.values[2] == max(attrs["leakage_bound_rare"], attrs["canary_recovery"])
    feasible = [t for t in study.trials if not t.user_attrs.get("stopped_early")]
    assert feasible, "no substituting setting was under the default cap"
    chosen = run("select", "--study", "subst", "--storage", storage, "--out", str(tmp_path / "s.json"))
    assert chosen["leakage_objective"] == "sensitive" and chosen["leakage"] <= 0.05
    assert chosen["tokens_unchanged"] is not None and chosen["blind_floor"] is not None
    written = json.loads((tmp_path / "s.json").read_text())
    assert written["substitute"]["keep_top"] == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimize", "--study", "x", "--sampler", "annealing"], "unknown sampler 'annealing'"),
        (
            ["optimize", "--study", "x", "--storage", "nonsense://"],
            "malformed storage URL|cannot use storage URL",
        ),
        (["optimize", "--study", "x", "--storage", "sqlite:////no/such/dir/db.sqlite"], "does not exist"),
        (["optimize", "--study", "x", "--max-leakage", "-0.1"], r"max-leakage must be in \[0, 1\]"),
        (["select", "--study", "nope"], "no study named 'nope'"),
        (["report", "--study", "nope", "--out", "r"], "no study named 'nope'"),
        (["optimize", "--study", "x", "--steps", "a,b"], "comma-separated list of int"),
    ],
)
def test_bad_search_input(args, message, storage):
    if "--storage" not in args:
        args = [*args, "--storage", storage]
    assert re.search(message, run(*args, ok=False)["error"])


@pytest.mark.parametrize(
    ("vertical", "message"),
    [
        ([{"op": "scramble", "intensity": 1.0}], "unknown vertical operator 'scramble'"),
        ([{"op": "tilt", "intensity": 7.0}], "tilt intensity must be in [0, 1.5], got 7.0"),
    ],
)
def test_bad_settings_files(tmp_path, vertical, message):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"vertical": vertical}))
    error = run("keygen", "--settings", str(path), "--out", str(tmp_path / "k"), ok=False)["error"]
    assert message in error and "s.json" in error
    assert not (tmp_path / "k").exists()


def in_memory_study(*points):
    """A study holding complete trials with the given (accuracy, cost, leakage), numbered in order."""
    study = optuna.create_study(directions=list(DIRECTIONS))
    settings = TrialSettings(preset("light"), TuningBudget()).to_dict()
    for accuracy, cost, leakage in points:
        study.add_trial(
            create_trial(
                values=[accuracy, cost, leakage],
                params={"x": 0.0},
                distributions={"x": FloatDistribution(0, 1)},
                user_attrs={"settings": settings},
            )
        )
    return study


def test_policies_pick_from_the_front():
    front = [
        Candidate.of("s", t)
        for t in in_memory_study((0.80, 100, 0.9), (0.78, 50, 0.3), (0.60, 10, 0.25)).trials
    ]
    assert choose(front, "max-accuracy").candidate.trial_number == 0
    assert choose(front, "knee").candidate.trial_number == 1


def test_reoptimisation_replaces_only_when_better():
    old = [Candidate.of("old", t) for t in in_memory_study((0.80, 100, 0.5)).trials]
    new = [Candidate.of("new", t) for t in in_memory_study((0.79, 50, 0.4), (0.82, 120, 0.6)).trials]
    replace, choice = decide(None, old, "max-accuracy")
    assert replace and choice.reason.startswith("first selection")
    replace, choice = decide(old[0], new, "max-accuracy")
    assert replace and choice.candidate.accuracy == 0.82 and "better than trial 0 of old" in choice.reason
    replace, choice = decide(new[1], old, "max-accuracy")
    assert not replace and choice.candidate is new[1] and choice.reason.startswith("kept trial 1 of new")


def test_caps_and_front():
    study = in_memory_study((0.8, 100, 0.9), (0.7, 100, 0.95), (0.6, 10, 0.2))
    assert [t.number for t in feasible_front(study)] == [0, 2]  # trial 1 is dominated by trial 0
    assert [t.number for t in feasible_front(study, Caps(max_leakage=0.5))] == [2]
    assert Caps(max_leakage=0.5).tighter(Caps(max_leakage=0.3, max_cost=5)).to_dict() == {
        "max_leakage": 0.3,
        "min_accuracy": None,
        "max_cost": 5,
    }


def test_space_round_trips_settings():
    space = SearchSpace()
    study = optuna.create_study(directions=list(DIRECTIONS))
    trial = study.ask()
    settings = space.suggest(trial)
    fixed = optuna.trial.FixedTrial(space.params_of(settings))
    assert space.suggest(fixed) == settings


def test_config_of_a_foreign_study_is_refused(storage):
    optuna.create_study(study_name="foreign", storage=optuna_storage(storage))
    assert (
        "not made by shaketune"
        in run("select", "--study", "foreign", "--storage", storage, ok=False)["error"]
    )
    with pytest.raises(Exception, match="not made by shaketune"):
        study_config(optuna.load_study(study_name="foreign", storage=optuna_storage(storage)))


def test_space_searches_recovery_training_and_old_spaces_keep_it_off():
    space = SearchSpace(recovery_steps=(0, 50), recovery_parts=("embeddings",))
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        settings = space.suggest(trial)
        seen.add(settings.recovery.steps)
        if settings.recovery.enabled:
            assert settings.recovery.part == "embeddings" and trial.params["recovery.part"] == "embeddings"
            assert settings.recovery.objective == "distill"
        else:
            assert "recovery.part" not in trial.params  # conditional: asked only when recovery trains
        fixed = optuna.trial.FixedTrial(space.params_of(settings))
        assert space.suggest(fixed) == settings
        study.tell(trial, [0.5, 1.0, 0.5])
    assert seen == {0, 50}
    stored_before_recovery = {
        k: v for k, v in SearchSpace().to_dict().items() if not k.startswith("recovery")
    }
    assert SearchSpace.from_dict(stored_before_recovery).recovery_steps == (0,)
    with pytest.raises(SettingsError, match="recovery"):
        SearchSpace(recovery_parts=("head",))


def test_space_searches_homophones_and_old_spaces_keep_them_off():
    space = SearchSpace(max_shares=(1.0, 0.002), recovery_steps=(0,))
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        settings = space.suggest(trial)
        homophones = settings.shaking.homophones
        seen.add(homophones.max_share)
        if homophones.enabled:
            assert 0.0 <= homophones.copy_noise <= 4.0
            assert "homophones" in settings.to_dict()
        else:
            assert "homophones.copy_noise" not in trial.params  # conditional on flattening
        assert space.suggest(optuna.trial.FixedTrial(space.params_of(settings))) == settings
        study.tell(trial, [0.5, 1.0, 0.5])
    assert seen == {1.0, 0.002}
    stored_before = {
        k: v for k, v in SearchSpace().to_dict().items() if k not in ("max_shares", "copy_noise")
    }
    assert SearchSpace.from_dict(stored_before).max_shares == (1.0,)
    with pytest.raises(SettingsError, match="max shares"):
        SearchSpace(max_shares=(0.0,))
    assert SearchSpace(recovery_objective="lm").max_shares == (1.0, 0.005, 0.002)  # LM heads take copies


def test_space_searches_mixing_and_old_spaces_keep_it_off():
    space = SearchSpace(substitute=(False,), max_shares=(1.0,), recovery_steps=(0,))
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=optuna.samplers.RandomSampler(seed=2))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        settings = space.suggest(trial)
        mix = settings.shaking.mix
        seen.add(mix.enabled)
        if mix.enabled:
            assert mix.k in space.mix_k and 0.1 <= mix.tau <= 2.0 and 0.0 <= mix.noise <= 4.0
            assert "mix" in settings.shaking.to_dict()
        else:
            assert "mix.k" not in trial.params  # conditional on mixing
        assert space.suggest(optuna.trial.FixedTrial(space.params_of(settings))) == settings
        study.tell(trial, [0.5, 1.0, 0.5])
    assert seen == {False, True}
    stored_before = {k: v for k, v in SearchSpace().to_dict().items() if not k.startswith("mix")}
    assert SearchSpace.from_dict(stored_before).mix == (False,)
    with pytest.raises(SettingsError, match="mix tau"):
        SearchSpace(mix_tau=(0.0, 1.0))

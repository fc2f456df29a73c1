"""Reviewing studies: `studies` counts completed trials apart from failed ones and prints rounded
figures; the report's plots keep every trial visible and leave the 3-D plot room."""

import json
import re

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from adaptive.cli import app
from adaptive.report import HEIGHT_3D, write_report
from adaptive.study import StudyConfig, open_study
from objectives.task import DataSource, TaskSpec
from objectives.trial import TrialSettings
from storage.engine import optuna_storage
from tests.cli import runner


def made_study(url: str) -> optuna.Study:
    task = TaskSpec(DataSource("train.tsv"), DataSource("eval.tsv"), DataSource("public.tsv"))
    study = open_study("reviewed", optuna_storage(url), StudyConfig("m", task))
    settings = TrialSettings.from_dict({"coverage": 1.0}).to_dict()
    for accuracy, cost, leakage in ((0.812345, 6000.4, 1.0), (0.75, 3000, 0.612345), (0.63, 3100, 0.26)):
        study.add_trial(
            create_trial(
                values=[accuracy, cost, leakage],
                params={"coverage": 1.0},
                distributions={"coverage": FloatDistribution(0, 1)},
                user_attrs={"settings": settings, "accuracy_gap": 0.0, "strongest_attack": "nearest"},
            )
        )
    study.add_trial(create_trial(state=TrialState.FAIL))
    return study


def test_studies_count_completed_trials_and_round_figures(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    made_study(url)
    shown = runner.invoke(app, ["studies", "--storage", url])
    assert shown.exit_code == 0, shown.output
    assert "reviewed: 3 trials (1 fail), front 3, best accuracy 0.8123, lowest leakage 0.2600" in shown.stdout
    assert "lowest cost 3,000 GFLOP" in shown.stdout
    listed = json.loads(runner.invoke(app, ["studies", "--storage", url, "--json"]).stdout)["studies"][0]
    assert listed["trials"] == 3 and listed["states"]["fail"] == 1


def test_report_plots_keep_trial_zero_visible_and_the_3d_plot_whole(tmp_path):
    page = write_report(made_study(f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "report").read_text()
    scales = re.findall(r'"colorscale":\[\[0\.0,"rgb\((\d+),(\d+),(\d+)\)"', page)
    assert scales, "no colour scale found in the plots"
    for red, green, blue in scales:  # the lowest trial number is drawn darker than a pale tint
        assert (int(red) + int(green) + int(blue)) / 3 < 215, (red, green, blue)
    heights = [int(h) for h in re.findall(r'"height":(\d+)', page)]
    assert max(heights) == HEIGHT_3D >= 700

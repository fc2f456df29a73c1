"""The settings `make demo` starts its study from load, and the demo's search space keeps them as they are
(params_of moves settings outside a space to its edge: a drifted file would silently measure others)."""

import shlex
from pathlib import Path

from optuna.trial import FixedTrial

from adaptive.space import SearchSpace
from adaptive.study import load_settings_list

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def demo_option(name: str) -> str:
    words = shlex.split((SCRIPTS / "demo.sh").read_text().replace("\\\n", " "))
    return words[words.index(name) + 1]


def test_the_demo_start_settings_lie_inside_the_demo_space():
    settings = load_settings_list(str(SCRIPTS / "demo-start.json"))
    space = SearchSpace(
        operators=tuple(demo_option("--operators").split(",")),
        steps=(int(demo_option("--steps")),),
        learning_rates=(float(demo_option("--learning-rates")),),
        modes=(demo_option("--modes"),),
        recovery_steps=(int(demo_option("--recovery-steps")),),
        max_shares=tuple(float(s) for s in demo_option("--max-shares").split(",")),
    )
    assert len(settings) >= 3
    for item in settings:
        assert space.suggest(FixedTrial(space.params_of(item))) == item

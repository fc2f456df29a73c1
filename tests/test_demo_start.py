"""The settings `make demo` and `make lm-demo` start their studies from load, and each demo's search space
keeps them as they are (params_of moves settings outside a space to its edge: a drifted file would
silently measure others)."""

import shlex
from pathlib import Path

import pytest
from optuna.trial import FixedTrial

from adaptive.space import SearchSpace
from adaptive.study import load_settings_list

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def demo_options(script: str) -> dict[str, str]:
    """The options of the script's ``optimize`` command."""
    lines = (SCRIPTS / script).read_text().replace("\\\n", " ").splitlines()
    words = shlex.split(next(line for line in lines if line.startswith('"$st" optimize')))
    return {word: words[i + 1] for i, word in enumerate(words[:-1]) if word.startswith("--")}


@pytest.mark.parametrize(
    ("script", "start"), [("demo.sh", "demo-start.json"), ("lm-demo.sh", "lm-demo-start.json")]
)
def test_the_demo_start_settings_lie_inside_the_demo_space(script, start):
    option = demo_options(script)
    assert option["--enqueue"] == f"scripts/{start}"
    settings = load_settings_list(str(SCRIPTS / start))
    space = SearchSpace(
        operators=tuple(option["--operators"].split(",")),
        steps=(int(option["--steps"]),),
        learning_rates=(float(option["--learning-rates"]),),
        modes=tuple(option["--modes"].split(",")),
        recovery_steps=(int(option["--recovery-steps"]),),
        max_shares=tuple(float(s) for s in option["--max-shares"].split(",")),
        lora_ranks=tuple(int(r) for r in option.get("--lora-ranks", "8").split(",")),
        substitute=tuple(part == "on" for part in option.get("--substitute", "off,on").split(",")),
        substitute_keep_top=tuple(int(n) for n in option.get("--keep-top", "0,100,300,1000,3000").split(",")),
        substitute_candidates=tuple(option.get("--candidates", "vocabulary,clusters,mask").split(",")),
    )
    assert len(settings) >= 3
    for item in settings:
        assert space.suggest(FixedTrial(space.params_of(item))) == item

"""Help texts and messages show square brackets as written: rich markup would read a row range such as
``[start:stop]`` as a tag and drop it."""

import typer.core
from rich.text import Text
from typer.main import get_command
from typer.testing import CliRunner

from adaptive.cli import app
from adaptive.cli.common import warn
from tests.cli import run


def commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def test_no_help_text_loses_its_brackets_to_markup():
    texts = []
    for path, command in commands(get_command(app)):
        texts += [(path, command.help or "")]
        texts += [((*path, param.name), getattr(param, "help", None) or "") for param in command.params]
    assert any("[" in text for _, text in texts)
    if getattr(typer.core, "DEFAULT_MARKUP_MODE", None) == "rich":
        for where, text in texts:  # shown = as written, once escapes are undone
            assert Text.from_markup(text).plain == text.replace("\\[", "["), where


def test_measure_help_shows_the_row_range():
    result = CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
    assert result.exit_code == 0
    assert "then optionally [start:stop]." in result.output
    assert "\\[" not in result.output


def test_errors_and_warnings_show_brackets(tmp_path, capsys):
    error = run(
        "optimize",
        "--study",
        "s",
        "--storage",
        f"sqlite:///{tmp_path / 'b.db'}",
        "--steps",
        "[a,b]",
        ok=False,
    )["error"]
    assert "'[a,b]'" in error  # and run() checks that stderr shows the message whole
    warn("rows [start:stop] of [/]")
    assert "warning: rows [start:stop] of [/]" in capsys.readouterr().err

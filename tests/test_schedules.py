"""Schedules read cron the way crontab does (0 and 7 are Sunday, 1 is Monday; either day field
matches when both are given), and list their next run time."""

from datetime import datetime, timezone

import pytest

from adaptive.scheduler import add_schedule, list_schedules, make_scheduler, trigger_for
from operators.errors import SettingsError
from storage.repository import Repository
from tests.cli import run

START = datetime(2026, 3, 4, 12, 0, tzinfo=timezone.utc)  # a Wednesday


def next_fires(expression: str, count: int = 3) -> list[str]:
    trigger, previous, now, out = trigger_for(expression, None), None, START, []
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, now)
        out.append(previous.strftime("%a %Y-%m-%d %H:%M"))
        now = previous.replace(second=1)
    return out


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 3 * * 1", ["Mon 2026-03-09 03:00", "Mon 2026-03-16 03:00", "Mon 2026-03-23 03:00"]),
        ("0 3 * * 0", ["Sun 2026-03-08 03:00", "Sun 2026-03-15 03:00", "Sun 2026-03-22 03:00"]),
        ("0 3 * * 7", ["Sun 2026-03-08 03:00", "Sun 2026-03-15 03:00", "Sun 2026-03-22 03:00"]),
        ("30 6 * * 5-7", ["Fri 2026-03-06 06:30", "Sat 2026-03-07 06:30", "Sun 2026-03-08 06:30"]),
        ("0 3 * * 7-7", ["Sun 2026-03-08 03:00", "Sun 2026-03-15 03:00", "Sun 2026-03-22 03:00"]),  # issue 26
        ("0 0 * * 1-5", ["Thu 2026-03-05 00:00", "Fri 2026-03-06 00:00", "Mon 2026-03-09 00:00"]),
        ("0 12 * * sat,0", ["Sat 2026-03-07 12:00", "Sun 2026-03-08 12:00", "Sat 2026-03-14 12:00"]),
        ("15 2 * * */3", ["Sat 2026-03-07 02:15", "Sun 2026-03-08 02:15", "Wed 2026-03-11 02:15"]),  # 0,3,6
        # both day fields restricted: the 13th OR a Friday, as cron does
        ("0 9 13 * 5", ["Fri 2026-03-06 09:00", "Fri 2026-03-13 09:00", "Fri 2026-03-20 09:00"]),
        ("0 9 10 * 1", ["Mon 2026-03-09 09:00", "Tue 2026-03-10 09:00", "Mon 2026-03-16 09:00"]),
        ("@weekly", ["Sun 2026-03-08 00:00", "Sun 2026-03-15 00:00", "Sun 2026-03-22 00:00"]),
        ("0 0 1 * *", ["Wed 2026-04-01 00:00", "Fri 2026-05-01 00:00", "Mon 2026-06-01 00:00"]),
    ],
)
def test_cron_fires_on_the_days_crontab_means(expression, expected):
    assert next_fires(expression) == expected


@pytest.mark.parametrize(
    "expression",
    ["0 3 * * 8", "0 3 * * 5-2", "every day", "0 3 * *", "61 * * * *", "0 3 * * \u0663", "\u0663 3 * * *"],
)
def test_malformed_cron_is_refused(expression):
    with pytest.raises(SettingsError, match="malformed cron expression"):
        trigger_for(expression, None)


@pytest.mark.parametrize("seconds", [0.5, 1e12, float("inf"), float("nan")])
def test_interval_bounds(seconds):
    with pytest.raises(SettingsError, match="interval must be between"):
        trigger_for(None, seconds)


def test_schedules_list_shows_the_expression_and_next_run(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    Repository(url).ensure_target("t", "m", {}, "0" * 64)
    scheduler = make_scheduler(url, running=False)
    try:
        made = add_schedule(scheduler, url, "t", "0 3 * * 1", None)
        assert made.trigger == "cron '0 3 * * 1' (UTC)"
        assert list_schedules(scheduler)[0].next_run_time.strftime("%a %H:%M") == "Mon 03:00"
    finally:
        scheduler.shutdown(wait=False)
    listed = run("schedule", "list", "--storage", url)["schedules"]
    assert listed[0]["next_run_time"].endswith("03:00:00+00:00")
    assert datetime.fromisoformat(listed[0]["next_run_time"]).strftime("%a") == "Mon"

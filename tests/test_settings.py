"""Settings: a typed object with a JSON round trip; every invalid field gives a clear error."""

import json

import pytest

from operators.errors import SettingsError
from operators.settings import PRESETS, OperatorSettings, ShakeSettings, preset


def test_json_round_trip():
    settings = ShakeSettings(
        0.75, (OperatorSettings("tilt", 1.0, 0.5), OperatorSettings("dx-fixp", 2.5, 1.0))
    )
    assert ShakeSettings.from_json(settings.to_json()) == settings
    assert ShakeSettings.from_dict(json.loads(settings.to_json())).to_dict() == settings.to_dict()


def test_file_round_trip_and_defaults(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"vertical": [{"op": "gaussian", "intensity": 1}]}')
    loaded = ShakeSettings.load(path)
    assert loaded.coverage == 1.0
    assert loaded.vertical == (OperatorSettings("gaussian", 1.0, 1.0),)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"vertical": [{"op": "rot13", "intensity": 1}]}, "unknown vertical operator 'rot13'"),
        ({"vertical": [{"op": "gaussian", "intensity": 11}]}, r"gaussian intensity must be in \[0, 10.0\]"),
        ({"vertical": [{"op": "tilt", "intensity": -0.1}]}, r"tilt intensity must be in \[0, 1.5\]"),
        ({"vertical": [{"op": "addv", "intensity": 1, "dimension": 0}]}, r"dimension .* \(0, 1\]"),
        ({"vertical": [{"op": "addv", "intensity": "1"}]}, "intensity must be a number"),
        ({"vertical": [{"op": "addv", "intensity": float("nan")}]}, "must be finite"),
        ({"vertical": [{"op": "addv"}]}, "needs at least 'op' and 'intensity'"),
        ({"vertical": [{"op": "addv", "intensity": 1, "strength": 2}]}, "unknown field.*strength"),
        ({"coverage": 1.5}, r"coverage must be in \[0, 1\]"),
        ({"coverage": True}, "coverage must be a number"),
        ({"vertical": {"op": "addv"}}, "vertical must be a list"),
        ({"vertical": [{"op": "addv", "intensity": 1}] * 9}, "at most 8 vertical operators"),
        ({"version": 2}, "settings version 2 is not supported"),
        ({"colour": "red"}, "unknown field.*colour"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_invalid_settings_name_the_problem(data, message):
    with pytest.raises(SettingsError, match=message):
        ShakeSettings.from_dict(data)


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        ShakeSettings.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"coverage": ')
    with pytest.raises(SettingsError, match=r"bad.json: settings are not valid JSON \(line 1"):
        ShakeSettings.load(bad)


def test_presets_include_horizontal_only_and_are_valid():
    assert preset("horizontal-only").vertical == ()
    for name, settings in PRESETS.items():
        assert ShakeSettings.from_json(settings.to_json()) == settings, name
    with pytest.raises(SettingsError, match="unknown preset 'nope'"):
        preset("nope")


@pytest.mark.parametrize("old", ["strong", "flattened", "dx-privacy"])
def test_presets_named_for_a_privacy_the_bound_does_not_support_are_refused_with_their_new_name(old):
    with pytest.raises(SettingsError, match="was renamed .*leakage bound"):
        preset(old)

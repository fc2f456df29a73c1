"""Property-based tests: every malformed settings, key or data file gives a clear error and no partial
output; nothing else ever escapes (no stack trace reaches the user)."""

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive.cli import app
from objectives.data import DataError, read_labelled_text
from objectives.trial import TrialSettings
from operators.errors import KeyFileError, SettingsError
from operators.key import generate_key
from operators.keyfile import load_key, save_key
from operators.settings import ShakeSettings, preset
from operators.vertical import OPERATORS
from tests.cli import runner

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers(-5, 20) | st.floats(allow_nan=True) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
operator_like = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from([*OPERATORS, "rot13", ""]) | scalars,
        "intensity": st.floats(-1, 12) | scalars,
        "dimension": st.floats(-0.5, 1.5) | scalars,
        "extra": scalars,
    },
)
settings_like = st.fixed_dictionaries(
    {},
    optional={
        "coverage": st.floats(-0.5, 1.5) | scalars,
        "vertical": st.lists(operator_like, max_size=9) | scalars,
        "version": st.sampled_from([1, 2, "1"]),
        "tuning": st.dictionaries(
            st.sampled_from(["steps", "batch_size", "learning_rate", "mode", "epochs"]), scalars, max_size=4
        )
        | scalars,
    },
)


@FAST
@given(data=json_values | settings_like)
def test_settings_objects_are_valid_or_refused_clearly(data):
    for parse in (ShakeSettings.from_dict, TrialSettings.from_dict):
        try:
            parsed = parse(data)
        except SettingsError as exc:
            assert str(exc)
        else:
            assert parse(parsed.to_dict()) == parsed  # what is accepted round-trips


@SLOW
@given(content=st.binary(max_size=300) | settings_like.map(lambda d: json.dumps(d).encode()))
def test_keygen_with_any_settings_file_writes_a_key_or_nothing(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("keygen")
    (folder / "s.json").write_bytes(content)
    result = runner.invoke(
        app, ["keygen", "--settings", str(folder / "s.json"), "--out", str(folder / "k.key"), "--json"]
    )
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    if result.exit_code == 0:
        assert (folder / "k.key").is_file() and payload["fingerprint"]
    else:
        assert result.exit_code == 1 and payload["error"] and "Traceback" not in result.output
        assert not (folder / "k.key").exists() and list(folder.iterdir()) == [folder / "s.json"]


def key_file(tmp_path, tiny_mlm, tiny_tokenizer):
    key = generate_key(preset("medium"), tiny_mlm, tiny_tokenizer, "tiny", seed=b"\x09" * 32)
    path = save_key(key, tmp_path / "base.key")
    return key, path.read_bytes()


@FAST
@given(
    cut=st.integers(0, 2000),
    flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 255)), max_size=3),
    insert=st.binary(max_size=5),
)
def test_damaged_key_files_are_refused_clearly(
    tmp_path_factory, tiny_mlm, tiny_tokenizer, cut, flips, insert
):
    folder = tmp_path_factory.mktemp("keys")
    key, original = key_file(folder, tiny_mlm, tiny_tokenizer)
    damaged = bytearray(original[: max(1, cut)] if cut < len(original) else original)
    for position, value in flips:
        if damaged:
            damaged[position % len(damaged)] ^= value
    damaged[len(damaged) // 2 : len(damaged) // 2] = insert
    path = folder / "damaged.key"
    path.write_bytes(bytes(damaged))
    path.chmod(0o600)
    try:
        loaded = load_key(path)
    except KeyFileError as exc:
        assert key.seed.hex()[:16] not in str(exc)
    else:
        assert loaded == key  # only a change JSON ignores (e.g. whitespace) can load, and then it is the same


rows = st.lists(
    st.tuples(
        st.text(alphabet=string.printable, max_size=12), st.text(alphabet=string.printable, max_size=4)
    ),
    max_size=5,
)


@SLOW
@given(
    extension=st.sampled_from([".tsv", ".csv", ".jsonl", ".json"]),
    header=st.sampled_from(["sentence\tlabel", "sentence,label", "text\tlabel", "", '{"sentence": 1}']),
    body=rows | st.binary(max_size=120).map(lambda b: [(b.decode("latin-1"), "")]),
)
def test_data_files_are_read_or_refused_and_encode_writes_all_or_nothing(
    tmp_path_factory, extension, header, body
):
    folder = tmp_path_factory.mktemp("data")
    separator = "," if extension == ".csv" else "\t"
    lines = [header, *(separator.join(row) for row in body)]
    path = folder / f"data{extension}"
    path.write_text("\n".join(lines), encoding="utf-8", errors="replace")
    try:
        table = read_labelled_text(path)
    except DataError as exc:
        assert str(exc)
    else:
        assert len(table.texts) == len(table.labels) > 0
    key = folder / "k.key"
    runner.invoke(app, ["keygen", "--preset", "light", "--out", str(key), "--json"])
    result = runner.invoke(
        app, ["encode", "--key", str(key), "--data", str(path), "--out", str(folder / "up.jsonl"), "--json"]
    )
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert (folder / "up.jsonl").is_file()
    else:
        assert result.exit_code == 1 and not (folder / "up.jsonl").exists()
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary file left behind

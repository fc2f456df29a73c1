"""Labelled text from local csv/tsv/json/parquet files (via ``datasets``), validated up front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operators.errors import ShaketuneError


class DataError(ShaketuneError):
    """A data file is missing, empty or malformed."""


_BUILDERS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t", "quoting": 3}),  # GLUE-style TSV: tabs, no quoting
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
BINARY_PROBE = 1 << 16


@dataclass(frozen=True)
class LabelledText:
    """Sentences with one label each; labels are all ints or all strings."""

    texts: list[str]
    labels: list[Any]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def label_set(self) -> set[Any]:
        return set(self.labels)


def _read_text_table(path: Path, header: bool) -> tuple[list[str], dict[str, list[Any]]]:
    """A csv/tsv file read with pandas (the parser ``datasets`` uses for them, without its import and
    cache): its column names (positions as "0", "1", ... without a header line) and columns."""
    import pandas as pd

    options = dict(_BUILDERS[path.suffix.lower()][1])
    try:
        frame = pd.read_csv(path, header=0 if header else None, encoding="utf-8", **options)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text") from None
    except Exception as exc:  # the parser's message can quote a line of the file: name only its type
        raise DataError(f"{path}: cannot parse as {path.suffix[1:]} ({type(exc).__name__})") from None
    names = [str(name) for name in frame.columns]
    columns = {}
    for name, column in zip(names, frame.columns, strict=True):
        values = frame[column].astype(object).tolist()
        columns[name] = [v.item() if hasattr(v, "item") else v for v in values]
    return names, columns


def _read_table(path: Path) -> tuple[list[str], dict[str, list[Any]]]:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    builder, options = _BUILDERS[path.suffix.lower()]
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as exc:  # datasets wraps every parser failure in its own exception types
        cause = exc.__cause__ or exc
        raise DataError(f"{path}: cannot parse as {path.suffix[1:]} ({type(cause).__name__})") from None
    return list(table.column_names), {name: list(table[name]) for name in table.column_names}


def is_position(column: str) -> bool:
    """A column given by its position (0 is the first), as header-less files need."""
    return str(column).isdigit()


def check_file(path: str | Path) -> Path:
    """A readable, non-empty, regular text data file of a supported type (else a DataError)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if not path.is_file():  # directories, devices (/dev/zero), sockets, fifos
        raise DataError(f"{path} is not a regular file")
    if path.suffix.lower() not in _BUILDERS:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(_BUILDERS)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        with path.open("rb") as handle:
            probe = handle.read(BINARY_PROBE)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() != ".parquet" and b"\0" in probe:
        raise DataError(f"{path} is a binary file, not {path.suffix[1:]} text")
    return path


def read_columns(path: str | Path, columns: Sequence[str], header: bool = True) -> dict[str, list[Any]]:
    """The named columns of a local file, or with names "0", "1", ... the columns at those positions
    (``header=False``: a csv/tsv file without a header line). Errors name the file and what is wrong
    with it, and never quote its content: a header-less file's first line is a private row."""
    path = check_file(path)
    textual = path.suffix.lower() in (".csv", ".tsv")
    if not header and not textual:
        raise DataError(f"{path}: only csv and tsv files can lack a header line")
    named = [c for c in columns if not is_position(c)]
    if not header and named:
        raise DataError(
            f"{path} has no header line, so its columns have no names: give them by position "
            "(e.g. --text-column 0 --label-column 1)"
        )
    if header and textual and _has_header_only(path):
        raise DataError(f"{path} has a header but no rows")
    names, table = _read_text_table(path, header) if textual else _read_table(path)
    positions = [c for c in columns if is_position(c) and c not in table]
    if header and positions:  # the first row was read as names: a position would read past a lost row
        hint = (
            'if the file has no header line, say so (--no-header, or "header": false) and keep the positions'
            if textual
            else "give the columns by name"
        )
        raise DataError(
            f"{path} is read with a header line, so its columns go by name, and it has no column named "
            f"{', '.join(map(repr, positions))}; {hint}"
        )
    missing = [c for c in named if c not in table]
    if missing:
        hint = (
            '; if the file has no header line, say so (--no-header, or "header": false) and give the '
            "columns by position (e.g. --text-column 0 --label-column 1)"
            if textual
            else ""
        )
        raise DataError(
            f"{path} has no column {', '.join(map(repr, missing))} (it has {len(names)} columns; set "
            f"the names with --text-column/--label-column){hint}"
        )
    selected = {}
    for column in columns:
        if column in table:
            selected[column] = table[column]
        elif is_position(column):
            if int(column) >= len(names):
                raise DataError(f"{path} has {len(names)} columns; there is no column at position {column}")
            selected[column] = table[names[int(column)]]
    if not selected or not next(iter(selected.values())):
        raise DataError(f"{path} has no rows")
    return selected


def read_labelled_text(
    path: str | Path, text_column: str = "sentence", label_column: str = "label", header: bool = True
) -> LabelledText:
    """Texts and labels of a local file, validated."""
    columns = read_columns(path, (text_column, label_column), header)
    return check_labelled_text(columns[text_column], columns[label_column], str(path))


def read_texts(path: str | Path, text_column: str = "sentence", header: bool = True) -> list[str]:
    """Texts of a local file (no labels needed), validated."""
    texts = read_columns(path, (text_column,), header)[text_column]
    check_texts(texts, str(path))
    return texts


def check_labelled_text(texts: list[Any], labels: list[Any], source: str) -> LabelledText:
    """Validate texts and labels read from ``source``; errors name the source and the row."""
    check_texts(texts, source)
    _check_labels(labels, source)
    return LabelledText(texts, labels, source)


def _has_header_only(path: Path) -> bool:
    with path.open("rb") as handle:
        lines = [line for _, line in zip(range(2), (ln for ln in handle if ln.strip()), strict=False)]
    return len(lines) < 2


def check_texts(texts: list[Any], path: str) -> None:
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"{path}: text in row {row + 1} is {type(text).__name__}, not a string")


def _check_labels(labels: list[Any], path: str) -> None:
    for row, label in enumerate(labels):
        if label is None or (isinstance(label, float) and math.isnan(label)):
            raise DataError(f"{path}: label in row {row + 1} is missing")
    kinds = set()
    for row, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise DataError(
                f"{path}: label in row {row + 1} is {type(label).__name__}; labels must be "
                "integers or strings"
            )
        kinds.add(type(label))
    if len(kinds) > 1:
        raise DataError(f"{path}: labels mix integers and strings")


def label_ids(labels: list[Any]) -> tuple[list[int], dict[int, str] | None]:
    """Class indices for training: ints are used as given; strings are numbered in sorted order."""
    if all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        if min(labels) < 0:
            raise DataError("integer labels must be >= 0")
        return list(labels), None
    if all(isinstance(label, str) for label in labels):
        names = sorted(set(labels))
        index = {name: i for i, name in enumerate(names)}
        return [index[label] for label in labels], dict(enumerate(names))
    raise DataError("labels must be all integers or all strings")

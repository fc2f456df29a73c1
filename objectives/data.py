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


def _read_table(path: Path) -> Any:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    builder, options = _BUILDERS[path.suffix.lower()]
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as exc:  # datasets wraps every parser failure in its own exception types
        cause = exc.__cause__ or exc
        raise DataError(f"{path}: cannot parse as {path.suffix[1:]} ({type(cause).__name__})") from None


def read_columns(path: str | Path, columns: Sequence[str]) -> dict[str, list[Any]]:
    """The named columns of a local file; errors name the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix.lower() not in _BUILDERS:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(_BUILDERS)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    if path.suffix.lower() in (".csv", ".tsv") and _has_header_only(path):
        raise DataError(f"{path} has a header but no rows")
    table = _read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path} has no column(s) {', '.join(map(repr, missing))}; it has "
            f"{', '.join(map(repr, table.column_names))} (set the column names with "
            "--text-column/--label-column)"
        )
    if table.num_rows == 0:
        raise DataError(f"{path} has no rows")
    return {column: list(table[column]) for column in columns}


def read_labelled_text(
    path: str | Path, text_column: str = "sentence", label_column: str = "label"
) -> LabelledText:
    """Texts and labels of a local file, validated."""
    columns = read_columns(path, (text_column, label_column))
    return check_labelled_text(columns[text_column], columns[label_column], str(path))


def read_texts(path: str | Path, text_column: str = "sentence") -> list[str]:
    """Texts of a local file (no labels needed), validated."""
    texts = read_columns(path, (text_column,))[text_column]
    _check_texts(texts, str(path))
    return texts


def check_labelled_text(texts: list[Any], labels: list[Any], source: str) -> LabelledText:
    """Validate texts and labels read from ``source``; errors name the source and the row."""
    _check_texts(texts, source)
    _check_labels(labels, source)
    return LabelledText(texts, labels, source)


def _has_header_only(path: Path) -> bool:
    with path.open("rb") as handle:
        lines = [line for _, line in zip(range(2), (ln for ln in handle if ln.strip()), strict=False)]
    return len(lines) < 2


def _check_texts(texts: list[Any], path: str) -> None:
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

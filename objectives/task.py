"""A task: where the private training data, the evaluation data and the attacker's public text come from.

A source is a local file (csv, tsv, json, jsonl, parquet) or a hub dataset
``hf:DATASET[:CONFIG]:SPLIT`` such as ``hf:glue:sst2:train`` (only where a network allows), optionally
followed by a row range ``[start:stop]``, e.g. ``../shared/data/sst2/dev.tsv[1000:]``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from objectives.data import DataError, LabelledText, check_labelled_text, read_columns

_RANGE = re.compile(r"^(?P<location>.+?)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


@dataclass(frozen=True)
class DataSource:
    """A file or hub split, and optionally a row range of it."""

    location: str
    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str) -> DataSource:
        match = _RANGE.match(text.strip())
        if not match:
            return cls(text.strip())
        to_int = lambda value: int(value) if value else None  # noqa: E731
        return cls(match["location"], to_int(match["start"]), to_int(match["stop"]))

    def __str__(self) -> str:
        if self.start is None and self.stop is None:
            return self.location
        return f"{self.location}[{self.start if self.start is not None else ''}:{self.stop or ''}]"

    @property
    def is_hub(self) -> bool:
        return self.location.startswith("hf:")

    def load(self, text_column: str = "sentence", label_column: str = "label") -> LabelledText:
        """Texts and labels of the selected rows (read once per process; a changed file is read again)."""
        columns = self._rows((text_column, label_column))
        return check_labelled_text(columns[text_column], columns[label_column], str(self))

    def load_texts(self, text_column: str = "sentence") -> list[str]:
        """Texts of the selected rows, for sources without labels (the attacker's public text)."""
        return self._rows((text_column,))[text_column]

    def _rows(self, columns: tuple[str, ...]) -> dict[str, list]:
        stamp = None if self.is_hub else _file_stamp(self.location)
        table = _load_columns(self.location, columns, stamp)
        selected = {name: values[self.start : self.stop] for name, values in table.items()}
        if not selected[columns[0]]:
            raise DataError(f"{self} selects no rows (the source has {len(table[columns[0]])})")
        return selected


def _file_stamp(location: str) -> tuple[float, int] | None:
    path = Path(location)
    return (path.stat().st_mtime, path.stat().st_size) if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _load_columns(location: str, columns: tuple[str, ...], stamp: object) -> dict[str, list]:
    if location.startswith("hf:"):
        return _load_hub(location[3:], columns)
    return read_columns(location, columns)


def _load_hub(spec: str, columns: tuple[str, ...]) -> dict[str, list]:
    import datasets

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise DataError(f"hub source must look like hf:DATASET[:CONFIG]:SPLIT, got hf:{spec}")
    path, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        table = datasets.load_dataset(path, config, split=split)
    except Exception as exc:  # offline, unknown name, unknown split: all end here
        raise DataError(
            f"cannot load hub dataset {spec!r} ({type(exc).__name__}); without a network use local files"
        ) from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"hub dataset {spec!r} has no column(s) {', '.join(missing)}")
    return {column: list(table[column]) for column in columns}


@dataclass(frozen=True)
class TaskSpec:
    """Private training data, evaluation data (private inference) and the attacker's public text."""

    train: DataSource
    eval: DataSource
    public: DataSource
    text_column: str = "sentence"
    label_column: str = "label"

    @classmethod
    def sst2(cls, root: str | Path = "../shared/data/sst2") -> TaskSpec:
        """SST-2: train.tsv is private; dev.tsv's first 1,000 rows evaluate, the rest is public text.

        test.tsv stays untouched for final figures (benchmarks).
        """
        root = Path(root)
        return cls(
            DataSource(str(root / "train.tsv")),
            DataSource(str(root / "dev.tsv"), 0, 1000),
            DataSource(str(root / "dev.tsv"), 1000, None),
        )

    def describe(self) -> str:
        return f"train {self.train} | eval {self.eval} | public {self.public}"

    def to_dict(self) -> dict[str, str]:
        return {
            "train": str(self.train),
            "eval": str(self.eval),
            "public": str(self.public),
            "text_column": self.text_column,
            "label_column": self.label_column,
            "describe": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> TaskSpec:
        return cls(
            DataSource.parse(data["train"]),
            DataSource.parse(data["eval"]),
            DataSource.parse(data["public"]),
            data.get("text_column", "sentence"),
            data.get("label_column", "label"),
        )

    def fingerprint(self) -> str:
        """SHA-256 over the sources, their row ranges and the content of local files."""
        h = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode())
        for source in (self.train, self.eval, self.public):
            path = Path(source.location)
            h.update(_file_sha256(str(path), *(_file_stamp(str(path)) or ())) if path.is_file() else b"")
        return h.hexdigest()


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, *stamp: object) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()

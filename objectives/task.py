"""A task: where the private training data, the evaluation data and the attacker's public text come from.

A source is a local file (csv, tsv, json, jsonl, parquet) or a hub dataset
``hf:DATASET[:CONFIG]:SPLIT`` such as ``hf:glue:sst2:train`` (only where a network allows, or from the
local hub cache), optionally followed by a row range ``[start:stop]``, e.g.
``../shared/data/sst2/dev.tsv[1000:]``. ``DATASET`` is a hub id (``name`` or ``owner/name``), never a
local path: local data goes by its path, which the service checks against its data roots.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objectives.data import DataError, LabelledText, check_labelled_text, check_texts, read_columns

_RANGE = re.compile(r"^(?P<location>.+?)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")
# a hub id: name or owner/name of letters, digits, '-', '_', '.', not starting with '.' or '-' (no path)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
MIN_ROWS = 4  # a source selecting fewer rows is refused when a task is checked
MAX_PUBLIC_OVERLAP = 0.1  # public text may share at most this share of its rows with the private ones
CLASSIFICATION = "classification"  # a sequence classifier: text and label per row
LM = "lm"  # a causal language model: a document, or a prompt and its response, per row
TASK_KINDS = (CLASSIFICATION, LM)


@dataclass(frozen=True)
class DataSource:
    """A file or hub split, and optionally a row range of it."""

    location: str
    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str) -> DataSource:
        """``LOCATION`` or ``LOCATION[start:stop]`` (integers, either may be left out, negatives count
        from the end); an empty source, a malformed or an empty range is refused."""
        text = text.strip()
        if not text:
            raise DataError("a data source is empty; give a file or hf:DATASET[:CONFIG]:SPLIT")
        if any(ord(char) < 32 or ord(char) == 127 for char in text):
            raise DataError("a data source holds control characters")
        match = _RANGE.match(text)
        if not match:
            if text.endswith("]") and "[" in text:
                raise DataError(f"malformed row range in {text!r}: use [start:stop] with integers")
            return cls._checked(text)
        to_int = lambda value: int(value) if value not in ("", "-") else None  # noqa: E731
        start, stop = to_int(match["start"]), to_int(match["stop"])
        if start is not None and stop is not None and (start >= 0) == (stop >= 0) and stop <= start:
            raise DataError(f"row range [{start}:{stop}] of {match['location']!r} selects no rows")
        return cls._checked(match["location"].strip(), start, stop)

    @classmethod
    def _checked(cls, location: str, start: int | None = None, stop: int | None = None) -> DataSource:
        if location.startswith("hf:"):
            hub_parts(location[3:])
        return cls(location, start, stop)

    def __str__(self) -> str:
        if self.start is None and self.stop is None:
            return self.location
        start = "" if self.start is None else self.start
        stop = "" if self.stop is None else self.stop
        return f"{self.location}[{start}:{stop}]"

    @property
    def is_hub(self) -> bool:
        return self.location.startswith("hf:")

    def load(
        self, text_column: str = "sentence", label_column: str = "label", header: bool = True
    ) -> LabelledText:
        """Texts and labels of the selected rows (read once per process; a changed file is read again)."""
        columns = self._rows((text_column, label_column), header)
        return check_labelled_text(columns[text_column], columns[label_column], str(self))

    def load_pairs(self, prompt_column: str, text_column: str, header: bool = True) -> list[tuple[str, str]]:
        """(prompt, response) of the selected rows, for language-model tasks with prompts."""
        columns = self._rows((text_column, prompt_column), header)
        check_texts(columns[text_column], str(self))
        check_texts(columns[prompt_column], str(self))
        return list(zip(columns[prompt_column], columns[text_column], strict=True))

    def load_documents(
        self, text_column: str, prompt_column: str | None = None, header: bool = True
    ) -> list[tuple[str, str]]:
        """A language-model source as (prompt, text) pairs; the prompt is empty for plain documents."""
        if prompt_column is None:
            return [("", text) for text in self.load_texts(text_column, header)]
        return self.load_pairs(prompt_column, text_column, header)

    def load_texts(self, text_column: str = "sentence", header: bool = True) -> list[str]:
        """Texts of the selected rows, for sources without labels (the attacker's public text)."""
        texts = self._rows((text_column,), header)[text_column]
        check_texts(texts, str(self))
        return texts

    def _rows(self, columns: tuple[str, ...], header: bool = True) -> dict[str, list]:
        stamp = None if self.is_hub else _file_stamp(self.location)
        table = _load_columns(self.location, columns, stamp, header)
        selected = {name: values[self.start : self.stop] for name, values in table.items()}
        if not selected[columns[0]]:
            raise DataError(f"{self} selects no rows (the source has {len(table[columns[0]])})")
        return selected


def _file_stamp(location: str) -> tuple[float, int] | None:
    path = Path(location)
    return (path.stat().st_mtime, path.stat().st_size) if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _load_columns(
    location: str, columns: tuple[str, ...], stamp: object, header: bool = True
) -> dict[str, list]:
    if location.startswith("hf:"):
        return _load_hub(location[3:], columns)
    return read_columns(location, columns, header)


def hub_parts(spec: str) -> tuple[str, str | None, str]:
    """(dataset id, config, split) of ``DATASET[:CONFIG]:SPLIT``; refused unless the dataset is a hub id
    (a local path such as ``/data/x`` or ``../x`` never is, so no hub source reads a local directory)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise DataError(f"hub source must look like hf:DATASET[:CONFIG]:SPLIT, got hf:{spec}")
    path, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    if not _HUB_ID.match(path) or ".." in path:
        raise DataError(
            "a hub source names a dataset on the hub (name or owner/name), not a local path; "
            "give local data by its file path"
        )
    return path, config, split


def _load_hub(spec: str, columns: tuple[str, ...]) -> dict[str, list]:
    import datasets

    path, config, split = hub_parts(spec)
    failed = DataError(
        f"cannot load hub dataset {spec!r}; hub sources load from the hub or its local cache, never from a "
        "local directory (without a network use local files)"
    )
    if Path(path).exists():  # load_dataset would read a directory of that name: refused, said as any failure
        raise failed
    try:
        table = datasets.load_dataset(path, config, split=split)
    except Exception:  # offline, unknown name, unknown split: all end here
        raise failed from None
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
    header: bool = True  # False: csv/tsv files without a header line, columns given by position
    kind: str = CLASSIFICATION
    prompt_column: str | None = None  # lm only: the prompt; text_column is then the response (the targets)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise DataError(f"task kind must be one of {', '.join(TASK_KINDS)}, got {self.kind!r}")
        if self.prompt_column is not None and self.kind != LM:
            raise DataError("a prompt column belongs to language-model tasks (kind lm)")

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

    @property
    def is_lm(self) -> bool:
        return self.kind == LM

    def describe(self) -> str:
        """The sources in one line (stored with the task; part of its fingerprint, so kept as it was)."""
        kind = f"{self.kind}: " if self.is_lm else ""
        return f"{kind}train {self.train} | eval {self.eval} | public {self.public}"

    def describe_fully(self) -> str:
        """The sources, the columns and whether files have a header line: what tells two tasks apart."""
        columns = f"text column {self.text_column!r}, label column {self.label_column!r}"
        if self.prompt_column is not None:
            columns += f", prompt column {self.prompt_column!r}"
        header = "with a header line" if self.header else "without a header line (columns by position)"
        return f"{self.describe()} | {columns} | files {header}"

    def to_dict(self) -> dict[str, Any]:
        """``header``, ``kind`` and ``prompt_column`` appear only when not at their defaults, so tasks
        stored before they existed keep their fingerprint."""
        return {
            "train": str(self.train),
            "eval": str(self.eval),
            "public": str(self.public),
            "text_column": self.text_column,
            "label_column": self.label_column,
            **({} if self.header else {"header": False}),
            **({"kind": self.kind} if self.is_lm else {}),
            **({"prompt_column": self.prompt_column} if self.prompt_column is not None else {}),
            "describe": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(
            DataSource.parse(data["train"]),
            DataSource.parse(data["eval"]),
            DataSource.parse(data["public"]),
            str(data.get("text_column", "sentence")),
            str(data.get("label_column", "label")),
            bool(data.get("header", True)),
            str(data.get("kind", CLASSIFICATION)),
            None if data.get("prompt_column") is None else str(data["prompt_column"]),
        )

    def load_train(self) -> LabelledText:
        return self.train.load(self.text_column, self.label_column, self.header)

    def load_eval(self) -> LabelledText:
        return self.eval.load(self.text_column, self.label_column, self.header)

    def load_public(self) -> list[str]:
        return self.public.load_texts(self.text_column, self.header)

    def load_documents(self, source: DataSource) -> list[tuple[str, str]]:
        """A language-model source of this task as (prompt, text) pairs (see DataSource.load_documents)."""
        return source.load_documents(self.text_column, self.prompt_column, self.header)

    def check(self, min_rows: int = MIN_ROWS) -> dict[str, int]:
        """Load every source now and refuse what would fail later, or leak: fewer than ``min_rows``
        rows, a single training label, evaluation labels the training data lacks, public text that is
        largely the private training rows. Returns the row counts; messages never quote a row."""
        if self.is_lm:
            return self._check_lm(min_rows)
        train, evaluation, public = self.load_train(), self.load_eval(), self.load_public()
        self._check_rows(min_rows, train=len(train), eval=len(evaluation), public=len(public))
        if len(train.label_set()) < 2:
            raise DataError(f"train source {self.train} has a single label; a classifier needs two or more")
        if {type(x) for x in train.labels} != {type(x) for x in evaluation.labels}:
            raise DataError("training labels and evaluation labels are of different types")
        unseen = evaluation.label_set() - train.label_set()
        if unseen:
            swapped = (
                "; none of them does: are the text and label columns swapped?"
                if unseen == evaluation.label_set()
                else ""
            )
            raise DataError(
                f"eval source {self.eval} has {len(unseen)} label(s) that never occur in the training data"
                f"{swapped} (text column {self.text_column!r}, label column {self.label_column!r})"
            )
        self._check_overlap(set(train.texts), public)
        return {"train": len(train), "eval": len(evaluation), "public": len(public)}

    def _check_lm(self, min_rows: int) -> dict[str, int]:
        """A language-model task's checks: enough rows, public text disjoint from the private documents."""
        train, evaluation = self.load_documents(self.train), self.load_documents(self.eval)
        public = self.load_public()
        self._check_rows(min_rows, train=len(train), eval=len(evaluation), public=len(public))
        self._check_overlap({text for _, text in train}, public)
        return {"train": len(train), "eval": len(evaluation), "public": len(public)}

    def _check_rows(self, min_rows: int, **counts: int) -> None:
        """Refuse a source selecting fewer than ``min_rows`` rows."""
        sources = {"train": self.train, "eval": self.eval, "public": self.public}
        for name, rows in counts.items():
            if rows < min_rows:
                raise DataError(
                    f"{name} source {sources[name]} selects {rows} rows; at least {min_rows} are needed"
                )

    def _check_overlap(self, private: set[str], public: list[str]) -> None:
        """Refuse public text that is largely the private rows (it would hand the attacker the data)."""
        shared = sum(text in private for text in public)
        if shared > MAX_PUBLIC_OVERLAP * len(public):
            raise DataError(
                f"public text {self.public} repeats private training rows: {shared} of its {len(public)} "
                f"rows are in {self.train}; the attacker's public text must be disjoint from the private data"
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

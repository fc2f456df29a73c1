"""Encoded data: the shaken token ids the owner uploads, as JSON lines.

Two kinds of file, one kind per file: a classifier's examples, ``{"input_ids": [...], "label": ...}``, and
a language model's, ``{"input_ids": [...], "loss_from": N}`` (the next-token loss covers the positions
from N on: 1 for a document, the response's first token after a prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objectives.data import DataError
from objectives.tokens import map_token_ids
from operators.atomic import write_file_atomic
from operators.key import ShakeKey
from operators.randomness import KeyStream

CLASSIFICATION = "classification"
LM = "lm"


@dataclass(frozen=True)
class EncodedData:
    """Shaken token ids per example, with the example's label as given (a classifier's data) or where
    its next-token targets start (a language model's: ``loss_from``, and no labels)."""

    input_ids: list[list[int]]
    labels: list[Any] | None = None
    loss_from: list[int] | None = None

    def __post_init__(self) -> None:
        if (self.labels is None) == (self.loss_from is None):
            raise ValueError("encoded data holds either labels (classification) or loss_from (lm)")
        given = self.labels if self.labels is not None else self.loss_from
        if len(given) != len(self.input_ids):  # type: ignore[arg-type]
            raise ValueError("encoded data needs one label or loss_from per example")

    @property
    def kind(self) -> str:
        """``classification`` or ``lm``."""
        return LM if self.loss_from is not None else CLASSIFICATION

    @property
    def is_lm(self) -> bool:
        return self.loss_from is not None

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_token_ids(
    key: ShakeKey, token_ids: list[list[int]], source: KeyStream | None = None
) -> list[list[int]]:
    """Substitute occurrences where the key says so (the same text always the same way), then apply the
    key's horizontal map to every id (one gather over all examples); a homophonic key draws each
    occurrence's copy from ``source`` (None: the OS CSPRNG)."""
    return map_token_ids(key.substitute(token_ids), lambda flat: key.encode(flat, source))


def save_encoded(path: str | Path, data: EncodedData) -> Path:
    """Write one ``{"input_ids": [...], "label": ...}`` (or ``"loss_from": N``) object per line,
    atomically."""
    if data.loss_from is not None:
        rows = (
            {"input_ids": ids, "loss_from": start}
            for ids, start in zip(data.input_ids, data.loss_from, strict=True)
        )
    else:
        rows = (
            {"input_ids": ids, "label": label} for ids, label in zip(data.input_ids, data.labels, strict=True)
        )
    lines = (json.dumps(row, separators=(",", ":")) for row in rows)
    return write_file_atomic(path, ("\n".join(lines) + "\n").encode())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind_of(row: Any) -> str | None:
    """The kind of one parsed line: ``lm`` with loss_from and no label, ``classification`` with a label
    and no loss_from; None for anything else."""
    if not isinstance(row, dict) or "input_ids" not in row:
        return None
    if "label" in row and "loss_from" not in row:
        return CLASSIFICATION
    if "loss_from" in row and "label" not in row:
        return LM
    return None


def load_encoded(path: str | Path) -> EncodedData:
    """Read an encoded-data file of either kind; malformed lines, and a file mixing the two kinds, are
    reported by line number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"encoded data file not found: {path}")
    ids: list[list[int]] = []
    values: list[Any] = []  # labels, or loss_from
    kind, first = None, 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path} line {number}: not an encoded example") from None
            if isinstance(row, dict) and "label" in row and "loss_from" in row:
                raise DataError(
                    f"{path} line {number}: holds both a label (classification) and loss_from (lm)"
                )
            row_kind = _kind_of(row)
            if row_kind is None:
                raise DataError(f"{path} line {number}: not an encoded example")
            if kind is None:
                kind, first = row_kind, number
            elif row_kind != kind:
                raise DataError(
                    f"{path} line {number}: a {_described(row_kind)} in a file whose line {first} is a "
                    f"{_described(kind)}; one file holds one kind"
                )
            seq = row["input_ids"]
            if not isinstance(seq, list) or not all(_is_int(i) and i >= 0 for i in seq):
                raise DataError(f"{path} line {number}: input_ids must be a list of non-negative ints")
            if kind == LM:
                start = row["loss_from"]
                if not _is_int(start) or not 1 <= start <= len(seq):
                    raise DataError(
                        f"{path} line {number}: loss_from must be an int from 1 to the number of "
                        f"input_ids ({len(seq)})"
                    )
                values.append(start)
            else:
                values.append(row["label"])
            ids.append(seq)
    if not ids:
        raise DataError(f"{path} holds no examples")
    return EncodedData(ids, loss_from=values) if kind == LM else EncodedData(ids, values)


def _described(kind: str) -> str:
    return (
        "language-model example (loss_from, no label)"
        if kind == LM
        else "classification example (a label, no loss_from)"
    )

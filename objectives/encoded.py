"""Encoded data: the shaken token ids and labels the owner uploads, as JSON lines."""

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


@dataclass(frozen=True)
class EncodedData:
    """Shaken token ids per example, with the example's label as given."""

    input_ids: list[list[int]]
    labels: list[Any]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_token_ids(
    key: ShakeKey, token_ids: list[list[int]], source: KeyStream | None = None
) -> list[list[int]]:
    """Apply the key's horizontal map to every id (one gather over all examples); a homophonic key
    draws each occurrence's copy from ``source`` (None: the OS CSPRNG)."""
    return map_token_ids(token_ids, lambda flat: key.encode(flat, source))


def save_encoded(path: str | Path, data: EncodedData) -> Path:
    """Write one ``{"input_ids": [...], "label": ...}`` object per line, atomically."""
    lines = (
        json.dumps({"input_ids": ids, "label": label}, separators=(",", ":"))
        for ids, label in zip(data.input_ids, data.labels, strict=True)
    )
    return write_file_atomic(path, ("\n".join(lines) + "\n").encode())


def load_encoded(path: str | Path) -> EncodedData:
    """Read an encoded-data file; malformed lines are reported by line number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"encoded data file not found: {path}")
    ids, labels = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                seq, label = row["input_ids"], row["label"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{path} line {number}: not an encoded example") from None
            if not isinstance(seq, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in seq
            ):
                raise DataError(f"{path} line {number}: input_ids must be a list of non-negative ints")
            ids.append(seq)
            labels.append(label)
    if not ids:
        raise DataError(f"{path} holds no examples")
    return EncodedData(ids, labels)

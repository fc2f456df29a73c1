"""Crash-safe output: files and directories appear whole under their final name, or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from operators.errors import ShaketuneError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _parent(path: Path) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ShaketuneError(f"directory {parent} does not exist")
    return parent


def write_file_atomic(path: str | Path, data: bytes, mode: int = 0o644, replace: bool = True) -> Path:
    """Write ``data`` to ``path`` via a synced temporary file; ``replace=False`` never overwrites."""
    path = Path(path)
    if not replace and path.exists():
        raise FileExistsError(str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path))
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # raises FileExistsError instead of replacing
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def directory_atomic(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block succeeds.

    ``path`` must not exist or be an empty directory, so nothing the user has is overwritten.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ShaketuneError(f"{path} already exists and is not an empty directory")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path)))
    try:
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
        yield tmp
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

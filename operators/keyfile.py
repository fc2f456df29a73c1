"""Key files: versioned JSON with a checksum, written atomically with mode 0600, never overwritten.

Every way a key file can be wrong (missing, readable by others, truncated, edited, another format or
version) is reported by a :class:`KeyFileError` naming the problem; no message ever quotes the file.
"""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from operators.atomic import write_file_atomic
from operators.errors import KeyFileError, SettingsError
from operators.identity import ModelIdentity
from operators.key import SEED_BYTES, ShakeKey
from operators.settings import ShakeSettings

KEY_FORMAT = "shaketune-key"
KEY_VERSION = 3  # 2 added the copy table of homophonic keys, 3 substitution's kept ids; older files load
READABLE_VERSIONS = (1, 2, 3)
MAX_KEY_FILE_BYTES = 1 << 20


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def key_to_dict(key: ShakeKey) -> dict[str, Any]:
    """The key file's content, checksum included."""
    body = {
        "format": KEY_FORMAT,
        "version": KEY_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": key.fingerprint,
        "settings": key.settings.to_dict(),
        "model": key.model.to_dict(),
        "seed": key.seed.hex(),
        "copies": [list(pair) for pair in key.copies],
        "kept": list(key.kept),
    }
    return {**body, "checksum": _checksum(body)}


def save_key(key: ShakeKey, path: str | Path) -> Path:
    """Write ``key`` to a new file readable by its owner only; refuses to replace an existing key."""
    path = Path(path)
    payload = json.dumps(key_to_dict(key), indent=2, sort_keys=True).encode() + b"\n"
    try:
        return write_file_atomic(path, payload, mode=0o600, replace=False)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; a key is never overwritten (choose another --out)"
        ) from None


def _check_permissions(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            f"restrict it with: chmod 600 {path}"
        )


def load_key(path: str | Path) -> ShakeKey:
    """Read, verify and return a key; any defect raises :class:`KeyFileError`."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"key file not found: {path}")
    _check_permissions(path)
    if path.stat().st_size > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path} is too large to be a shaketune key file")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(
            f"key file {path} is truncated or corrupted (not valid JSON); restore it from a backup"
        ) from None
    return key_from_dict(data, str(path))


def key_from_dict(data: Any, source: str = "key") -> ShakeKey:
    """Verify format, version and checksum of parsed key-file content, then build the key."""
    if not isinstance(data, dict) or data.get("format") != KEY_FORMAT:
        raise KeyFileError(f"{source} is not a shaketune key file")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        raise KeyFileError(
            f"{source} has key format version {version!r}; this shaketune reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    body = {name: value for name, value in data.items() if name != "checksum"}
    if data.get("checksum") != _checksum(body):
        raise KeyFileError(f"{source} was modified or damaged (checksum mismatch)")
    try:
        settings = ShakeSettings.from_dict(data.get("settings"))
    except SettingsError as exc:
        raise KeyFileError(f"{source} holds invalid settings: {exc}") from None
    model = ModelIdentity.from_dict(data.get("model"))
    seed_hex = data.get("seed")
    try:
        seed = bytes.fromhex(seed_hex) if isinstance(seed_hex, str) else b""
    except ValueError:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise KeyFileError(f"{source} has a malformed seed")
    copies = data.get("copies", [])
    if not isinstance(copies, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(type(x) is int for x in pair) for pair in copies
    ):
        raise KeyFileError(f"{source} has a malformed copy table")
    kept = data.get("kept", [])
    if not isinstance(kept, list) or not all(type(i) is int and 0 <= i < model.vocab_size for i in kept):
        raise KeyFileError(f"{source} has a malformed list of kept ids")
    try:
        key = ShakeKey(settings, model, seed, tuple(tuple(pair) for pair in copies), tuple(kept))
    except ValueError:
        raise KeyFileError(f"{source} has a copy table or kept ids that do not match its settings") from None
    if data.get("fingerprint") != key.fingerprint:
        raise KeyFileError(f"{source} fingerprint does not match its content")
    return key

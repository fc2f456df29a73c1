"""CypherTalk shaking in pure torch: keys, horizontal and vertical operators, implantation,
private inference and recovery. Imports neither Optuna nor SQLAlchemy."""

from operators.errors import (
    KeyFileError,
    KeyMismatchError,
    SettingsError,
    ShaketuneError,
    UnsupportedModelError,
)
from operators.implant import shake_model, vocabulary_tensors
from operators.inference import private_logits
from operators.key import ShakeKey, generate_key
from operators.keyfile import load_key, save_key
from operators.recovery import recover_model
from operators.settings import PRESETS, OperatorSettings, ShakeSettings, preset
from operators.vertical import OPERATORS

__all__ = [
    "OPERATORS",
    "PRESETS",
    "KeyFileError",
    "KeyMismatchError",
    "OperatorSettings",
    "SettingsError",
    "ShakeKey",
    "ShakeSettings",
    "ShaketuneError",
    "UnsupportedModelError",
    "generate_key",
    "load_key",
    "preset",
    "private_logits",
    "recover_model",
    "save_key",
    "shake_model",
    "vocabulary_tensors",
]

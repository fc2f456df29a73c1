"""Where the heavy work runs: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``, and mixed precision where it pays.

Keys, implantation and encoding always stay on the CPU (they must be exact and reproducible); models and
the attacks' large matrix products go to the chosen device. On the CPU nothing changes: no autocast, no
copies, the same numbers bit for bit.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn

from operators.errors import SettingsError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
CPU = torch.device("cpu")
_CUDA = re.compile(r"cuda(?::(\d+))?")


def mps_available() -> bool:
    """Whether Apple's Metal backend is built into this torch and usable here."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str = "auto") -> torch.device:
    """The device ``spec`` names (``auto``: cuda, else mps, else cpu), or a SettingsError saying why not."""
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else _mps_or_cpu()
    if text == "cpu":
        return CPU
    if text == "mps":
        if not mps_available():
            raise SettingsError("device mps is not available on this machine (no Apple Metal backend)")
        return torch.device("mps")
    match = _CUDA.fullmatch(text)
    if match is None:
        raise SettingsError(f"unknown device {spec!r}; use {DEVICE_CHOICES}")
    return _cuda(match.group(1))


def _mps_or_cpu() -> torch.device:
    return torch.device("mps") if mps_available() else CPU


def _cuda(index: str | None) -> torch.device:
    """``cuda`` or ``cuda:N``, checked against the GPUs this process can see."""
    if not torch.cuda.is_available():
        raise SettingsError("device cuda is not available: this torch has no CUDA or the machine no GPU")
    if index is None:
        return torch.device("cuda")
    count = torch.cuda.device_count()
    if int(index) >= count:
        raise SettingsError(
            f"device cuda:{index} does not exist: {count} GPU(s) visible (cuda:0 to cuda:{count - 1})"
        )
    return torch.device("cuda", int(index))


def bf16_autocast(device: torch.device) -> bool:
    """Whether work on ``device`` runs under bf16 autocast: CUDA GPUs that support bf16, nothing else."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@contextlib.contextmanager
def autocast(device: torch.device) -> Iterator[None]:
    """Mixed precision (bf16 autocast) on a CUDA GPU that supports it; nothing at all elsewhere."""
    if bf16_autocast(device):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def describe_device(device: torch.device) -> str:
    """The device for records: ``cpu``, ``mps``, ``cuda:0 (NVIDIA A100, bf16 autocast)``."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    precision = "bf16 autocast" if bf16_autocast(device) else "fp32"
    return f"cuda:{index} ({torch.cuda.get_device_name(index)}, {precision})"


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s weights are (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else CPU

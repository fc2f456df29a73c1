"""Device choice: parsing, the auto and cuda branches (mocked, no GPU needed), and the CPU path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives import device as devices
from objectives.device import autocast, describe_device, model_device, resolve_device
from operators.errors import SettingsError


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_falls_back_to_cpu(no_accelerator: None) -> None:
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_prefers_mps_over_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")


def test_auto_prefers_cuda(two_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_indices(two_gpus: None) -> None:
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(SettingsError, match="cuda:2 does not exist: 2 GPU"):
        resolve_device("cuda:2")


def test_cuda_unavailable_is_a_clear_error(no_accelerator: None) -> None:
    with pytest.raises(SettingsError, match="cuda is not available"):
        resolve_device("cuda")
    with pytest.raises(SettingsError, match="cuda is not available"):
        resolve_device("cuda:0")
    with pytest.raises(SettingsError, match="mps is not available"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:-1", "cuda:a", "tpu", "", "cuda0"])
def test_unknown_specs_are_refused(spec: str) -> None:
    with pytest.raises(SettingsError, match="unknown device"):
        resolve_device(spec)


def test_cpu_autocast_changes_nothing() -> None:
    layer = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    with autocast(torch.device("cpu")):
        inside = layer(x)
        assert not torch.is_autocast_enabled("cpu")
    assert inside.dtype == torch.float32
    assert torch.equal(inside, layer(x))


def test_autocast_is_bf16_only_on_cuda_with_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert devices.bf16_autocast(torch.device("cuda"))
    assert not devices.bf16_autocast(torch.device("cpu"))
    assert not devices.bf16_autocast(torch.device("mps"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert not devices.bf16_autocast(torch.device("cuda", 0))


def test_describe() -> None:
    assert describe_device(torch.device("cpu")) == "cpu"
    assert describe_device(torch.device("mps")) == "mps"


def test_describe_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"GPU {index}")
    assert describe_device(torch.device("cuda", 1)) == "cuda:1 (GPU 1, bf16 autocast)"


def test_model_device() -> None:
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.Sequential()) == torch.device("cpu")

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


# --- the commands: a device this machine lacks is refused before any work, and trials record theirs


def test_commands_refuse_unknown_devices(tmp_path) -> None:
    from tests.cli import run

    storage = f"sqlite:///{tmp_path / 'd.db'}"
    error = run("measure", "--preset", "medium", "--device", "gpu", ok=False)["error"]
    assert "unknown device 'gpu'" in error
    error = run("reoptimise", "t", "--storage", storage, "--device", "tpu", ok=False)["error"]
    assert "unknown device 'tpu'" in error
    assert not (tmp_path / "d.db").exists()  # refused before the database is even opened


def test_commands_refuse_a_missing_gpu(tmp_path, no_accelerator: None) -> None:
    from tests.cli import run

    args = ("--model", "m", "--data", str(tmp_path / "e.jsonl"), "--out", str(tmp_path / "o"))
    assert "cuda is not available" in run("tune", *args, "--device", "cuda", ok=False)["error"]
    storage = f"sqlite:///{tmp_path / 'w.db'}"
    error = run("worker", "--study", "s", "--storage", storage, "--device", "mps", ok=False)["error"]
    assert "mps is not available" in error


def test_the_device_option_reads_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.cli import run

    monkeypatch.setenv("SHAKETUNE_DEVICE", "cuda:x")
    error = run("evaluate", "--model", "m", "--data", str(tmp_path / "d.tsv"), ok=False)["error"]
    assert "unknown device 'cuda:x'" in error


def test_a_trial_records_its_device() -> None:
    import optuna

    from adaptive.study import Caps, record
    from objectives.trial import TrialResult, TrialRunner, TrialSettings
    from operators.settings import preset

    assert TrialRunner(task=None).device == torch.device("cpu")  # type: ignore[arg-type]
    result = TrialResult(
        settings=TrialSettings(preset("medium")),
        key_fingerprint="f",
        leakage_bound=0.5,
        leakage_attacks=0.4,
        attacks={},
        bound_attacks={},
        strongest_attack="",
        strongest_bound_attack="",
        cost_gflops=1.0,
        flops={},
        seconds={},
        peak_memory_mb=1.0,
    )
    assert result.to_dict()["device"] == "cpu"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    trial = study.ask()
    gpu = TrialResult(**{**vars(result), "device": "cuda:0 (GPU, bf16 autocast)"})
    record(trial, gpu, Caps())
    assert trial.user_attrs["device"] == "cuda:0 (GPU, bf16 autocast)"

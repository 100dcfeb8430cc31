"""Device choice. CUDA and MPS are absent here, so their availability checks
are patched; no training runs on a patched device."""

import pytest
import torch

from src.config import ConfigError
from src.devices import choose_device


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device("auto") == torch.device("cpu")


def test_available_device_is_used(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("cuda", strict=True) == torch.device("cuda")


def test_missing_device_falls_back_or_fails(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("cuda") == torch.device("cpu")
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1
    with pytest.raises(ConfigError) as error:
        choose_device("cuda", strict=True)
    assert "device.strict" in str(error.value)

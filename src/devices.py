"""Device choice: auto picks cuda, then mps, then cpu; a missing device falls
back to the CPU with one warning unless strict mode is set."""

import logging

import torch

from src.config import ConfigError

log = logging.getLogger(__name__)


def is_available(name: str) -> bool:
    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return torch.backends.mps.is_available()
    return name == "cpu"


def choose_device(requested: str, strict: bool = False) -> torch.device:
    """Return the device to train on for the requested name."""
    if requested == "auto":
        for name in ("cuda", "mps"):
            if is_available(name):
                return torch.device(name)
        return torch.device("cpu")

    if is_available(requested):
        return torch.device(requested)

    if strict:
        raise ConfigError(
            "device.name", requested, "a device available on this machine (cpu is)",
            f"choose device=cpu or device=auto, or drop device.strict=true "
            f"to fall back to the CPU when {requested} is missing",
        )
    log.warning("Device %s is not available here; training on the CPU instead.", requested)
    return torch.device("cpu")

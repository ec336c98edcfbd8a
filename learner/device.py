"""Check a requested torch device before anything starts, with a message that says what to do.

Why: `--device cuda` on a CPU build of torch (the README's pinned install) otherwise dies deep in
the first tensor copy with "AssertionError: Torch not compiled with CUDA enabled", after the
service has bound its socket and loaded its data.
"""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device this torch build or machine cannot use."""


def check_device(name: str) -> torch.device:
    """torch.device(name) if it can be used here; DeviceError with the reason otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"device {name!r} is not a torch device ({exc}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise DeviceError(f"device {name!r}: this torch build ({torch.__version__}) has no CUDA support; "
                              "install a CUDA build of torch (https://pytorch.org/get-started/) or use --device cpu")
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r}: torch has CUDA support but sees no GPU (driver, "
                              "CUDA_VISIBLE_DEVICES?); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type not in ("cpu", "mps"):
        raise DeviceError(f"device {name!r}: unsupported device type {device.type!r}; use cpu or cuda")
    return device

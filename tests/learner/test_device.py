"""--device is checked before a program starts, with a message that says what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from learner.device import DeviceError, check_device


def test_cpu_is_accepted_and_nonsense_is_refused():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="not a torch device"):
        check_device("gpu-please")
    with pytest.raises(DeviceError, match="unsupported device type"):
        check_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda is valid here")
def test_cuda_without_a_gpu_names_the_fix():
    with pytest.raises(DeviceError, match="--device cpu"):
        check_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda is valid here")
def test_the_service_refuses_cuda_at_start_with_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "learner.serve", "--device", "cuda", "--run-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "config error: device 'cuda'" in proc.stderr
    assert "Traceback" not in proc.stderr

"""Fixtures for the learner tests: small synthetic batches and tiny networks (2-core budget)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from learner_testkit import synthetic_batch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny networks gain nothing from a second thread, and on a shared 2-core machine torch's
    spinning OpenMP workers make a 2-thread run many times slower under load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def batches():
    """(real, sim, disc_real, disc_sim): sim dynamics shifted by +0.5 in s'."""
    return (synthetic_batch(64, 1), synthetic_batch(64, 2, shift=0.5),
            synthetic_batch(64, 3), synthetic_batch(64, 4, shift=0.5))

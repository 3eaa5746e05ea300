"""Shared fixtures. Tests run on CPU with tiny budgets; the digits-cnn
extractor is trained once and cached in the genbench cache directory."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("GENBENCH_PROGRESS", "0")
# Tests use tiny models, for which one thread is as fast as two on an idle
# machine and much faster on a busy one (no thread oversubscription).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def digits():
    from bench import data

    return data.load("digits")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

"""Shared test set-up. Fake CPU devices must be requested before jax is imported."""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
EVALDATA = SHARED / "evaldata"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: heavy test (real SmolLM2 model, multi-process); runs in CI")


@pytest.fixture(scope="session")
def evaldata_dir():
    if not EVALDATA.is_dir():
        pytest.skip(f"shared evaluation data not found at {EVALDATA}")
    return EVALDATA

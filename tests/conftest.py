"""Shared fixtures: tiny SeViLA models (random, offline) and the reference data location."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "reference" / "annotations"

# keep every cache (tokenizers, downloads) inside the test session
os.environ.setdefault("LAVIS_SEVILA_CACHE", str(REPO / ".cache" / "tests"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference annotations not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


def build_tiny(**overrides):
    """A fresh tiny SeViLA (eval mode) with dotted-key overrides of sevila_tiny.yaml."""
    import torch

    from lavis_sevila.models import SeViLA

    torch.manual_seed(overrides.pop("seed", 0))
    return SeViLA.from_model_type("tiny", **overrides).eval()


@pytest.fixture
def tiny():
    return build_tiny()


@pytest.fixture(scope="session")
def tiny_shared():
    """One tiny model for read-only tests (do not change its stage or weights)."""
    return build_tiny()

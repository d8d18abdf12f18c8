"""Evaluation metrics of SeViLA's tasks, as pure functions: these modules import numpy only
(no LAVIS, no torch; tests/test_light_imports.py checks it).

Kept apart from the LAVIS task classes so they can be checked against the official
evaluation scripts on saved predictions, without a model.  Definitions: docs/metrics.md.

The names below are loaded on first use, so ``python -m
lavis_sevila.tasks.metrics.moment_retrieval`` does not import its own module twice.
"""
from __future__ import annotations

from lavis_sevila._lazy import lazy_exports

_EXPORTS = {
    "evaluate_submission": "moment_retrieval",
    "frames_to_windows": "spans",
    "per_frame_accuracy": "spans",
    "uniform_bounds": "spans",
    "accuracy": "videoqa",
    "check_complete": "videoqa",
    "dedupe": "videoqa",
    "nextqa_accuracy": "videoqa",
    "nextqa_result_file": "videoqa",
    "nextqa_table": "videoqa",
    "star_accuracy": "videoqa",
}
__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

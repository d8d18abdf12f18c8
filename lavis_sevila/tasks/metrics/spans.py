"""Per-frame localizer answers -> moment retrieval windows (SeViLA appendix; the fork has none).

The localizer says "yes"/"no" for each sampled frame; QVHighlights is scored on windows in
seconds with a confidence.  This module turns one query's frame answers into the official
submission field ``pred_relevant_windows: [[start, end, score], ...]`` (best first), so the
official metrics (moment_retrieval.py) apply unchanged.  Definitions: docs/metrics.md.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

SPAN_THRESHOLD = 6  # paper: the average gap between GT spans in QVHighlights train, in frames

ArrayLike = Union[Sequence[float], np.ndarray]


def p_yes(yes_logits: ArrayLike, no_logits: ArrayLike) -> np.ndarray:
    """P("yes") of a two-way softmax over the "yes"/"no" logits: sigmoid(yes - no), overflow-free."""
    diff = np.asarray(yes_logits, dtype=float) - np.asarray(no_logits, dtype=float)
    return 0.5 * (1.0 + np.tanh(0.5 * diff))


def frame_is_yes(yes_logits: ArrayLike, no_logits: ArrayLike) -> np.ndarray:
    """A frame is "yes" when its yes logit is strictly greater (ties are "no"), as orig's QVH evaluation."""
    return np.asarray(yes_logits, dtype=float) > np.asarray(no_logits, dtype=float)


def _check_frames(yes: np.ndarray, no: np.ndarray, bounds: np.ndarray, duration: float, span_threshold: int) -> None:
    if yes.ndim != 1 or yes.shape != no.shape or len(yes) == 0:
        raise ValueError(
            f"yes/no logits must be two 1-D arrays of the same non-zero length, got {yes.shape} and {no.shape}"
        )
    if bounds.shape != (len(yes) + 1,):
        raise ValueError(f"{len(yes)} frames need {len(yes) + 1} time bounds, got shape {bounds.shape}")
    if not (np.all(np.isfinite(yes)) and np.all(np.isfinite(no)) and np.all(np.isfinite(bounds))):
        raise ValueError("logits and bounds must be finite")
    if np.any(np.diff(bounds) < 0):
        raise ValueError("time bounds must be non-decreasing (frames in time order)")
    if not duration > 0:
        raise ValueError(f"duration must be > 0, got {duration}")
    if isinstance(span_threshold, bool) or int(span_threshold) != span_threshold or span_threshold < 0:
        raise ValueError(f"span_threshold must be an integer >= 0, got {span_threshold!r}")


def frame_spans(is_yes: np.ndarray, span_threshold: int = SPAN_THRESHOLD) -> list[tuple[int, int]]:
    """(first, last) frame index of each span, in time order.

    Consecutive "yes" frames form a span; up to ``span_threshold`` consecutive "no" frames
    may sit inside one span, a longer run of "no" frames ends it.  A span starts and ends
    on a "yes" frame.
    """
    yes_idx = np.flatnonzero(is_yes)
    if len(yes_idx) == 0:
        return []
    # a new span starts where the run of "no" frames since the previous "yes" is too long
    breaks = np.flatnonzero(np.diff(yes_idx) - 1 > span_threshold)
    firsts = np.concatenate(([yes_idx[0]], yes_idx[breaks + 1]))
    lasts = np.concatenate((yes_idx[breaks], [yes_idx[-1]]))
    return [(int(a), int(b)) for a, b in zip(firsts, lasts)]


def frames_to_windows(
    yes_logits: ArrayLike,
    no_logits: ArrayLike,
    bounds: ArrayLike,
    duration: float,
    span_threshold: int = SPAN_THRESHOLD,
) -> list[list[float]]:
    """``[[start_s, end_s, score], ...]`` sorted by score (best first; ties keep time order).

    Frame i covers ``[bounds[i], bounds[i+1])`` seconds (n frames, n+1 bounds, e.g.
    ``linspace(lo, hi, n+1) / fps`` of the uniform sampling).  A span of frames
    first..last becomes ``[bounds[first], bounds[last+1]]`` clipped to ``[0, duration]``
    (spans left empty by the clipping are dropped).  Score = mean P("yes") =
    sigmoid(yes - no) over all the span's frames, the "no" frames inside it included, so
    gaps lower a span's confidence.  When no frame is "yes" (or every span fell outside
    the video) the single frame with the highest P("yes") (earliest on ties) is returned
    as the only window, with that P("yes") (< 0.5) as its score: every query gets a
    prediction, ranked low, instead of an empty list that the official metrics cannot score.
    """
    yes = np.asarray(yes_logits, dtype=float)
    no = np.asarray(no_logits, dtype=float)
    edges = np.asarray(bounds, dtype=float)
    _check_frames(yes, no, edges, duration, span_threshold)
    prob = p_yes(yes, no)
    starts = np.clip(edges[:-1], 0.0, duration)
    ends = np.clip(edges[1:], 0.0, duration)

    windows = []
    for first, last in frame_spans(frame_is_yes(yes, no), span_threshold):
        start, end = float(starts[first]), float(ends[last])
        if end > start:
            windows.append([start, end, float(np.mean(prob[first : last + 1]))])
    if not windows:
        inside = ends > starts
        if not np.any(inside):
            raise ValueError(f"no frame lies inside [0, {duration}] s: bounds {edges[0]}..{edges[-1]}")
        best = int(np.argmax(np.where(inside, prob, -np.inf)))
        windows.append([float(starts[best]), float(ends[best]), float(prob[best])])
    order = sorted(range(len(windows)), key=lambda i: -windows[i][2])
    return [windows[i] for i in order]


def uniform_bounds(start_frame: int, end_frame: int, n_frames: int, fps: float) -> np.ndarray:
    """The n+1 time bounds (seconds) of the uniform sampler's n intervals over frames [start_frame, end_frame].

    The sampler splits the frame range with ``linspace(start, end, n+1).astype(int)`` and
    takes one frame per interval; interval i is credited with
    ``[edge_i / fps, edge_{i+1} / fps)``.
    """
    if n_frames < 1 or fps <= 0:
        raise ValueError(f"need n_frames >= 1 and fps > 0, got {n_frames}, {fps}")
    return np.linspace(start_frame, end_frame, n_frames + 1).astype(int) / float(fps)


def per_frame_accuracy(yes_logits: ArrayLike, no_logits: ArrayLike, labels: ArrayLike) -> float:
    """Percent of frames whose yes/no answer equals its label (1/True = "yes"), the fork's QVH metric.

    Pooled over all frames given (any shape); the fork reports the same ratio as a fraction.
    """
    yes = np.asarray(yes_logits, dtype=float)
    truth = np.asarray(labels)
    if yes.shape != np.shape(no_logits) or yes.shape != truth.shape or yes.size == 0:
        raise ValueError(
            f"yes logits, no logits and labels must have one non-empty shape, got "
            f"{yes.shape}, {np.shape(no_logits)}, {truth.shape}"
        )
    if not np.all(np.isin(truth, (0, 1))):
        raise ValueError("labels must be 0/1 (or booleans)")
    return 100.0 * float(np.mean(frame_is_yes(yes, no_logits) == truth.astype(bool)))

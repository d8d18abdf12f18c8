"""Which frames of a video SeViLA looks at (spec section 4, LAVIS/SeViLA's video loader).

The rule, for a video of ``num_frames`` frames at ``fps`` and n frames wanted:

1. Range: the whole video ``[0, num_frames)``, or a window ``[start, end]`` seconds mapped to
   ``lo = int(start * fps)``, ``hi = int(end * fps)`` (``int`` truncates, as the authors'
   code does), then clamped: ``lo = max(lo, 0)``, ``hi = min(hi, num_frames)``.
2. ``edges = np.linspace(lo, hi, n + 1).astype(int)`` cuts the range into n intervals
   ``[edges[i], edges[i+1])``.
3. ``"uniform"`` (evaluation) takes each interval's midpoint ``(a + b) // 2``;
   ``"random"`` (training) takes a uniformly random index in ``[a, b)``, or ``a`` when the
   interval is empty.

A video (or window) shorter than n frames has empty or one-frame intervals, so indices repeat
and n frames are still returned.  The authors' code lowers n to the frame count there and then
its dataset rejects the sample and silently substitutes a random other one; we never do.

A window that holds no frame after clamping (it starts at or after the last frame, or ends
before time 0) raises :class:`EmptyWindowError`; a window shorter than one frame but inside
the video gives n copies of its frame ``lo``.  ``end < start`` is a ValueError.
"""
from __future__ import annotations

import numpy as np

from lavis_sevila.video.clip import EmptyWindowError

MODES = ("uniform", "random")


def frame_range(num_frames: int, fps: float, window: tuple[float, float] | None) -> tuple[int, int]:
    """The clamped ``[lo, hi)`` frame range of ``window`` (the whole video when None)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if window is None:
        return 0, num_frames
    if not fps > 0:
        raise ValueError(f"fps must be > 0 to place a window, got {fps}")
    start, end = (float(value) for value in window)
    if end < start:
        raise ValueError(f"window [{start}, {end}] ends before it starts")
    lo, hi = max(int(start * fps), 0), min(int(end * fps), num_frames)
    if lo >= num_frames or hi < 0:
        raise EmptyWindowError(
            f"window [{start}, {end}] s holds no frame of a video of {num_frames} frames "
            f"({num_frames / fps:.3f} s at {fps:g} fps)"
        )
    return lo, hi


def frame_indices(
    num_frames: int,
    fps: float,
    n: int,
    mode: str = "uniform",
    window: tuple[float, float] | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """int64 [n] frame indices by the rule in this module's docstring.

    ``rng`` drives ``"random"``; when None a freshly seeded generator is used, so forked
    DataLoader workers never share a random stream.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    lo, hi = frame_range(num_frames, fps, window)
    edges = np.linspace(lo, hi, n + 1).astype(np.int64)
    starts, stops = edges[:-1], edges[1:]
    if mode == "uniform":
        return (starts + stops) // 2
    rng = np.random.default_rng() if rng is None else rng
    picks = rng.integers(starts, np.maximum(stops, starts + 1))
    return np.where(stops > starts, picks, starts).astype(np.int64)

"""The contact sheet: what the localizer looked at, what it kept, and what the answerer said.

One PNG, three bands, top to bottom:

1. every sampled frame in a grid, exactly as the model received it (decoded at the model's
   image size, so a tiny model's 32-pixel frames look blocky), each labelled with its position
   among the sampled frames and its time in the video; the keyframes the localizer chose get a
   thick orange frame;
2. the localizer's score curve (the "yes" logit that ranks frames) against video time, the
   keyframes marked on it;
3. the caption: the question and every option with its probability, the chosen one highlighted.

The answer CLI (``python -m lavis_sevila.answer``) and the web demo (``python -m
lavis_sevila.webdemo``) both draw through :func:`render_contact_sheet`.  It only needs numpy and
matplotlib (Agg, no display); it knows nothing about the model.
"""
from __future__ import annotations

import io
import math
import os
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lavis_sevila.data.prompts import option_letter

KEY_COLOUR = "#ff7f0e"  # keyframe frames, markers and the chosen option's bar
KEY_RGB = (255, 127, 14)
PLAIN_COLOUR = "#c8c8c8"
GRID_COLUMNS = 8
DPI = 100
FIGURE_WIDTH_IN = 12.0
KEY_LINE_WIDTH = 5.0  # points; thick enough that its centre is pure KEY_COLOUR after antialiasing


@dataclass(frozen=True)
class ContactSheet:
    """A rendered sheet: the PNG bytes, plus where each frame sits in it (for tests and pages)."""

    png: bytes
    width: int
    height: int
    frame_boxes: list[tuple[int, int, int, int]]  # (left, top, right, bottom) pixels of each frame's image
    keyframes: list[int]

    def write(self, path: str | os.PathLike) -> Path:
        """Write the PNG atomically: a temporary file beside it (created with the usual
        permissions, unlike ``mkstemp``'s 0600), then a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            tmp.write_bytes(self.png)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def _as_hwc(frames: np.ndarray) -> np.ndarray:
    """uint8 frames [T, 3, H, W] (a Clip's layout) or [T, H, W, 3] -> [T, H, W, 3]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, 3, H, W] or [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if frames.shape[1] == 3 and frames.shape[-1] != 3:
        frames = frames.transpose(0, 2, 3, 1)
    if frames.shape[-1] != 3:
        raise ValueError(f"expected 3 colour channels, got frames of shape {frames.shape}")
    return frames


def _check(frames: np.ndarray, scores: Sequence[float], timestamps: Sequence[float], keyframes: Sequence[int],
           options: Sequence[str], probabilities: Sequence[float], answer_index: int) -> None:
    t = len(frames)
    if t == 0:
        raise ValueError("no frames to draw")
    if len(scores) != t or len(timestamps) != t:
        raise ValueError(f"{t} frames but {len(scores)} scores and {len(timestamps)} timestamps")
    bad = [k for k in keyframes if not 0 <= k < t]
    if bad:
        raise ValueError(f"keyframes {bad} are outside the {t} sampled frames")
    if len(options) != len(probabilities) or not options:
        raise ValueError(f"{len(options)} options but {len(probabilities)} probabilities")
    if not 0 <= answer_index < len(options):
        raise ValueError(f"answer index {answer_index} is outside the {len(options)} options")


def render_contact_sheet(
    frames: np.ndarray,
    scores: Sequence[float],
    timestamps: Sequence[float],
    keyframes: Sequence[int],
    question: str,
    options: Sequence[str],
    probabilities: Sequence[float],
    answer_index: int,
    title: str = "",
    note: str = "",
) -> ContactSheet:
    """Draw the sheet described in the module docstring and return it as a PNG.

    ``frames``: the T sampled frames (uint8); ``scores``: the localizer score of each;
    ``timestamps``: each frame's time in the video (seconds); ``keyframes``: positions among
    the T frames; ``probabilities``: one per option; ``note``: a line under the title (e.g.
    that the weights are random).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpec

    frames = _as_hwc(frames)
    _check(frames, scores, timestamps, keyframes, options, probabilities, answer_index)
    keyset = set(int(k) for k in keyframes)
    t = len(frames)
    cols = min(GRID_COLUMNS, t)
    rows = math.ceil(t / cols)
    left, right, gap, title_in = 0.06, 0.98, 0.08, 0.3
    side_in = FIGURE_WIDTH_IN * (right - left) / (cols + gap * (cols - 1))  # one square frame
    frames_in = rows * (side_in + title_in)
    header_in, curve_in, band_gap_in = 0.95, 2.4, 1.1
    caption_in = 0.9 + 0.32 * len(options)
    height_in = header_in + frames_in + curve_in + caption_in + 2 * band_gap_in + 0.5
    fig = Figure(figsize=(FIGURE_WIDTH_IN, height_in), dpi=DPI)
    fig.patch.set_facecolor("white")
    grid = GridSpec(
        3, 1, figure=fig, height_ratios=[frames_in, curve_in, caption_in],
        top=1 - header_in / height_in, bottom=0.5 / height_in, left=left, right=right, hspace=band_gap_in / ((frames_in + curve_in + caption_in) / 3),
    )
    fig.text(0.5, 1 - 0.3 / height_in, title or "SeViLA contact sheet", ha="center", va="center", fontsize=13, weight="bold")
    if note:
        fig.text(0.5, 1 - 0.62 / height_in, note, ha="center", va="center", fontsize=9, color="#a03000")

    frame_axes = []
    cells = grid[0].subgridspec(rows, cols, wspace=gap, hspace=title_in / side_in)
    for i in range(t):
        ax = fig.add_subplot(cells[i // cols, i % cols])
        ax.imshow(frames[i], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        key = i in keyset
        for spine in ax.spines.values():
            spine.set_color(KEY_COLOUR if key else PLAIN_COLOUR)
            spine.set_linewidth(KEY_LINE_WIDTH if key else 0.6)
        ax.set_title(f"#{i}  {timestamps[i]:.2f} s" + ("  key" if key else ""), fontsize=7,
                     color=KEY_COLOUR if key else "#333333", weight="bold" if key else "normal", pad=4)
        frame_axes.append(ax)

    curve = fig.add_subplot(grid[1])
    times = np.asarray(timestamps, dtype=float)
    values = np.asarray(scores, dtype=float)
    curve.plot(times, values, color="#1f77b4", marker="o", markersize=3, linewidth=1.2, label="localizer score")
    chosen = sorted(keyset)
    if chosen:
        curve.scatter(times[chosen], values[chosen], s=70, color=KEY_COLOUR, zorder=3, label="keyframes")
        for k in chosen:
            curve.axvline(times[k], color=KEY_COLOUR, alpha=0.35, linewidth=1)
            curve.annotate(f"#{k}", (times[k], values[k]), textcoords="offset points", xytext=(0, 7),
                           ha="center", fontsize=7, color=KEY_COLOUR)
    curve.set_xlabel("video time (s)")
    curve.set_ylabel('"yes" logit')
    curve.set_title("Localizer score of each sampled frame (the top-k become the keyframes)", fontsize=9)
    curve.grid(alpha=0.3)
    curve.legend(loc="best", fontsize=7)

    caption = fig.add_subplot(grid[2].subgridspec(1, 2, width_ratios=[0.16, 0.84], wspace=0)[1])
    probs = np.asarray(probabilities, dtype=float)
    labels = [f"{option_letter(j)}) {textwrap.shorten(text, 60)}" for j, text in enumerate(options)]
    colours = [KEY_COLOUR if j == answer_index else "#9fb8d0" for j in range(len(options))]
    y = np.arange(len(options))[::-1]
    caption.barh(y, probs, color=colours, height=0.6)
    caption.set_yticks(y, labels, fontsize=9)
    caption.set_xlim(0, 1)
    for yy, p in zip(y, probs):
        caption.text(min(p + 0.01, 0.9), yy, f"{p:.1%}", va="center", fontsize=8)
    caption.set_xlabel("probability (softmax over the option letters)", fontsize=8)
    question_line = "\n".join(textwrap.wrap(f"Q: {question}", 110)) or "Q:"
    answer_line = f"Answer: {option_letter(answer_index)}) {textwrap.shorten(options[answer_index], 60)}  ({probs[answer_index]:.1%})"
    caption.set_title(f"{question_line}\n{answer_line}", fontsize=10, loc="left", x=-0.19)
    for spine in ("top", "right"):
        caption.spines[spine].set_visible(False)

    buffer = io.BytesIO()
    fig.canvas.draw()  # applies the image aspect, so the positions below are where the frames end up
    width, height = (int(round(v)) for v in fig.canvas.get_width_height())
    boxes = []
    for ax in frame_axes:
        pos = ax.get_position()  # figure fraction, origin bottom left
        boxes.append((round(pos.x0 * width), round((1 - pos.y1) * height), round(pos.x1 * width), round((1 - pos.y0) * height)))
    fig.savefig(buffer, format="png", dpi=DPI)
    return ContactSheet(png=buffer.getvalue(), width=width, height=height, frame_boxes=boxes, keyframes=chosen)

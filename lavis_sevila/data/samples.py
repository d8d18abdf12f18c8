"""From one annotation and its decoded frames to the dict the model reads, and batches of them.

Both the map-style datasets (``lavis_sevila.datasets``) and the streaming shard dataset
(``lavis_sevila.data.shards``) build samples here, so the prompts, the per-frame labels and
the handling of unreadable videos are the same whichever way the frames arrive.

Unreadable videos (issue "bad input, nothing lost"):
- training: the dataset returns a :class:`Skipped` marker; :func:`collate` drops it and
  lists it in ``batch["skipped"]``, and :class:`SkipCounter` sums those over an epoch and
  fails the run above a threshold.  No other sample is drawn in its place.
- evaluation: the dataset either raises, or (``on_unreadable: unanswered``) returns
  :func:`unanswered_sample`: the question is kept with ``video_ok=False`` and an all-zero
  video.  That zero tensor is the only placeholder in the package and it must never be
  scored: the evaluation counts such a question as answered wrong.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import default_collate

from lavis_sevila.data import prompts
from lavis_sevila.data.schema import Annotation
from lavis_sevila.video.clip import Clip, EmptyWindowError

UNKNOWN = -1  # answer_idx, duration, frame labels and frame indices when not known

TENSOR_KEYS = ("video", "frame_indices", "timestamps", "frame_labels")
SCALAR_KEYS = {"answer_idx": torch.long, "num_options": torch.long, "duration": torch.float32, "video_ok": torch.bool}


@dataclass(frozen=True)
class Skipped:
    """Returned by a training dataset instead of a sample whose video cannot be read."""

    qid: str
    video: str
    reason: str


def record_prompts(record: Annotation) -> prompts.Prompts:
    """The answerer/localizer prompts of a record, by kind (spec section 3)."""
    if record.kind == "multiple_choice":
        return prompts.multiple_choice(record.question, record.options, record.answer)
    if record.kind == "next_event":
        return prompts.next_event(record.options, record.answer)
    if record.kind == "moment":
        return prompts.moment_query(record.question)
    raise ValueError(f"{record.qid}: unknown record kind {record.kind!r}")


def frame_labels(timestamps: np.ndarray, windows: Sequence[Sequence[float]] | None) -> torch.Tensor:
    """1 where a frame time t has start <= t <= end for some window, else 0; -1 without windows."""
    times = np.asarray(timestamps, dtype=np.float64)
    if windows is None:
        return torch.full((len(times),), UNKNOWN, dtype=torch.long)
    inside = np.zeros(len(times), dtype=bool)
    for start, end in windows:
        inside |= (times >= start) & (times <= end)
    return torch.from_numpy(inside.astype(np.int64))


def _text_fields(record: Annotation) -> dict[str, Any]:
    texts = record_prompts(record)
    return {
        "qa_input": texts.qa_input,
        "loc_input": texts.loc_input,
        "qa_output": texts.qa_output or "",
        "answer_idx": UNKNOWN if record.answer is None else record.answer,
        "num_options": 0 if record.options is None else len(record.options),
        "question_id": record.qid,
        "question_type": record.qtype or "",
        "video_id": record.video,
        "dataset": record.dataset,
        "duration": UNKNOWN if record.duration is None else float(record.duration),
        "relevant_windows": [list(window) for window in record.relevant_windows or []],
    }


class WindowMismatchError(EmptyWindowError):
    """A record's relevant windows end after the decoded video: annotation and video disagree.

    Labelling such a clip would call every frame "no" (the moment is not in the video), so it
    is handled like an unreadable video: skipped and counted in training, by
    ``on_unreadable`` at evaluation.
    """


def window_tolerance(duration: float) -> float:
    """How far (s) a window may end after the decoded end: rounding of 2 s annotation grids."""
    return max(1.0, 0.05 * duration)


def check_windows(record: Annotation, clip: Clip) -> None:
    """Raise WindowMismatchError when a relevant window ends after the decoded video's end."""
    if not record.relevant_windows:
        return
    limit = clip.duration + window_tolerance(clip.duration)
    late = [list(window) for window in record.relevant_windows if window[1] > limit]
    if late:
        raise WindowMismatchError(
            f"relevant window(s) {late} end after the decoded video's end ({clip.duration:.2f} s: "
            f"{clip.num_frames} frames at {clip.fps:g} fps); the annotation does not fit this video"
        )


def make_sample(record: Annotation, clip: Clip, vis_processor: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """The model's input for one question: processed frames, their times and labels, prompts.

    Raises WindowMismatchError when the record's windows do not fit the decoded video.
    """
    check_windows(record, clip)
    frames = clip.frames  # uint8 [n, 3, H, W]: Clip checks it
    video = vis_processor(frames)
    if not isinstance(video, torch.Tensor) or not video.is_floating_point() or video.shape[:2] != frames.shape[:2]:
        got = f"{video.dtype} {tuple(video.shape)}" if isinstance(video, torch.Tensor) else type(video).__name__
        raise TypeError(
            f"{record.qid}: the vis processor must return float frames [{frames.shape[0]}, 3, H, W], got {got} "
            "(is a sevila_video_* processor configured?)"
        )
    return {
        "video": video,
        "frame_indices": torch.as_tensor(np.asarray(clip.indices), dtype=torch.long),
        "timestamps": torch.as_tensor(np.asarray(clip.timestamps), dtype=torch.float32),
        "frame_labels": frame_labels(clip.timestamps, record.relevant_windows),
        **_text_fields(record),
        "video_ok": True,
        "video_error": "",
    }


ON_UNREADABLE = ("fail", "unanswered")


def check_unreadable_policy(on_unreadable: str) -> None:
    if on_unreadable not in ON_UNREADABLE:
        raise ValueError(f"on_unreadable must be one of {ON_UNREADABLE}, got {on_unreadable!r}")


def unreadable_sample(record: Annotation, training: bool, num_frames: int, image_size: int, reason: str) -> dict | Skipped:
    """What stands for a question whose frames cannot be read: skipped in training,
    kept as unanswered in evaluation (callers raise instead when the policy is "fail")."""
    if training:
        return Skipped(qid=record.qid, video=record.video, reason=reason)
    return unanswered_sample(record, num_frames, image_size, reason)


class UnreadableSampleError(RuntimeError):
    """Evaluation met a video it cannot read and ``on_unreadable`` is "fail"."""


def unusable_sample(
    record: Annotation, training: bool, on_unreadable: str, num_frames: int, image_size: int, reason: str
) -> dict | Skipped:
    """:func:`unreadable_sample`, or UnreadableSampleError when evaluation's policy is "fail"."""
    if training or on_unreadable == "unanswered":
        return unreadable_sample(record, training, num_frames, image_size, reason)
    raise UnreadableSampleError(
        f"question {record.qid}: {reason} (set on_unreadable: unanswered to count such "
        "questions as wrong instead of stopping)"
    )


def unanswered_sample(record: Annotation, num_frames: int, image_size: int, reason: str) -> dict:
    """Evaluation only: a question whose video cannot be read, kept so it is counted wrong.

    ``video`` is zeros (the only placeholder tensor in the package) and ``video_ok`` is
    False; the task must score the question as wrong without looking at the model's
    output for it.
    """
    return {
        "video": torch.zeros(num_frames, 3, image_size, image_size),
        "frame_indices": torch.full((num_frames,), UNKNOWN, dtype=torch.long),
        "timestamps": torch.full((num_frames,), float(UNKNOWN), dtype=torch.float32),
        "frame_labels": torch.full((num_frames,), UNKNOWN, dtype=torch.long),
        **_text_fields(record),
        "video_ok": False,
        "video_error": reason,
    }


def collate(samples: Sequence[dict | Skipped]) -> dict:
    """Stack tensors, keep strings and windows as lists, move skip markers to ``skipped``.

    ``num_samples`` is the number of real samples; it is 0 when every sample of the batch
    was skipped (then only ``num_samples`` and ``skipped`` are present).
    """
    kept = [sample for sample in samples if not isinstance(sample, Skipped)]
    skipped = [asdict(sample) for sample in samples if isinstance(sample, Skipped)]
    batch: dict[str, Any] = {"num_samples": len(kept), "skipped": skipped}
    if not kept:
        return batch
    keys = kept[0].keys()
    for sample in kept[1:]:
        if sample.keys() != keys:
            raise ValueError(f"samples have different keys: {sorted(keys ^ sample.keys())}")
    for key in keys:
        values = [sample[key] for sample in kept]
        if key in TENSOR_KEYS:
            shapes = {tuple(value.shape) for value in values}
            if len(shapes) > 1:
                raise ValueError(f"cannot batch {key!r}: shapes differ {sorted(shapes)}")
            # default_collate stacks straight into shared memory inside DataLoader workers,
            # saving the copy the worker queue would otherwise make
            batch[key] = default_collate(values)
        elif key in SCALAR_KEYS:
            batch[key] = torch.tensor(values, dtype=SCALAR_KEYS[key])
        else:
            batch[key] = values
    return batch


class TooManySkipped(RuntimeError):
    """More training samples were unreadable than the configured fraction allows."""


class SkipCounter:
    """Counts skipped training samples over an epoch, from the batches' ``skipped`` lists.

    Counting from batches (not inside the dataset) works with any number of DataLoader
    workers.  With several processes, sum ``seen`` and ``skipped`` over ranks (e.g.
    all_reduce) before :meth:`check`.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seen = 0
        self.skipped = 0
        self.examples: list[dict] = []  # the first few skipped samples, for the summary

    def update(self, batch: dict) -> None:
        skipped = batch.get("skipped", [])
        self.seen += batch["num_samples"] + len(skipped)
        self.skipped += len(skipped)
        self.examples.extend(skipped[: max(0, 10 - len(self.examples))])

    @property
    def fraction(self) -> float:
        return self.skipped / self.seen if self.seen else 0.0

    def summary(self) -> str:
        text = f"skipped {self.skipped} of {self.seen} training samples ({100 * self.fraction:.2f}%)"
        for example in self.examples:
            text += f"\n  {example['qid']} (video {example['video']}): {example['reason']}"
        if self.skipped > len(self.examples):
            text += f"\n  ... and {self.skipped - len(self.examples)} more"
        return text

    def check(self, max_fraction: float) -> None:
        """Raise TooManySkipped when more than ``max_fraction`` of the samples were skipped."""
        if self.fraction > max_fraction:
            raise TooManySkipped(f"{self.summary()}\nthis exceeds the allowed fraction {max_fraction}")

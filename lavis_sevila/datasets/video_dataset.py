"""Map-style dataset over our annotation jsonl and raw videos or frame folders.

One class serves every benchmark (NExT-QA, STAR, How2QA, TVQA, VLEP, QVHighlights,
synthetic): what differs between them is in the records (kind, options, window) and in
:mod:`lavis_sevila.data.samples`, not here.

Frames: ``n_frms`` per question, inside the record's ``[start, end]`` window when it has
one, "random" per interval in training and "uniform" (interval midpoints) at evaluation
(spec section 4; the rule itself is in ``lavis_sevila.video.sampling``).

Unreadable videos (a missing file, a file that does not decode, a window outside the
video, relevant windows that end after the decoded video) never make the dataset return
another question instead:
- training: ``__getitem__`` returns :class:`~lavis_sevila.data.samples.Skipped`;
  ``collater`` reports it in ``batch["skipped"]`` for the runner's ``SkipCounter``;
- evaluation, ``on_unreadable="fail"`` (default): raises :class:`UnreadableSampleError`
  naming the question, the path and the reason;
- evaluation, ``on_unreadable="unanswered"``: the question is kept with
  ``video_ok=False`` and a zero video, to be counted as answered wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lavis_sevila.data.samples import (
    Skipped,
    UnreadableSampleError,
    check_unreadable_policy,
    collate,
    make_sample,
    unusable_sample,
)
from lavis_sevila.data.schema import Annotation
from lavis_sevila.video import EmptyWindowError, VideoReadError, read_clip


__all__ = ["FrameSource", "SevilaVideoDataset", "UnreadableSampleError"]


@dataclass(frozen=True)
class FrameSource:
    """Where a record's frames are: ``root / pattern.format(video=record.video)``.

    The pattern names a video file ("{video}.mp4") or a folder of frame images ("{video}");
    ``fps`` is required for frame folders (their frame rate; a file carries its own).
    """

    root: Path
    pattern: str = "{video}.mp4"
    fps: Optional[float] = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        if "{video}" not in self.pattern:
            raise ValueError(f"video pattern {self.pattern!r} must contain '{{video}}'")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"frame folder fps must be > 0, got {self.fps}")

    def path(self, record: Annotation) -> Path:
        return Path(self.root) / self.pattern.format(video=record.video)


class SevilaVideoDataset(Dataset):
    """Questions (or moment queries) with their sampled, processed frames."""

    def __init__(
        self,
        records: Sequence[Annotation],
        source: FrameSource,
        vis_processor: Callable[[torch.Tensor], torch.Tensor],
        *,
        n_frms: int,
        training: bool,
        image_size: int = 224,
        on_unreadable: str = "fail",
    ):
        if n_frms < 1:
            raise ValueError(f"n_frms must be >= 1, got {n_frms}")
        check_unreadable_policy(on_unreadable)
        if not records:
            raise ValueError("no annotation records: an empty split is a configuration error")
        self.annotation = list(records)  # LAVIS datasets expose their records under this name
        self.source = source
        self.vis_processor = vis_processor
        self.n_frms = n_frms
        self.training = training
        self.image_size = image_size
        self.on_unreadable = on_unreadable
        self._rng: Optional[np.random.Generator] = None
        self._rng_seed: Optional[int] = None

    @property
    def sampling(self) -> str:
        return "random" if self.training else "uniform"

    def __len__(self) -> int:
        return len(self.annotation)

    def random_generator(self) -> np.random.Generator:
        """A generator seeded from torch's per-process seed.

        Each DataLoader worker (and each epoch's fresh workers) has its own torch seed, so
        workers never share a random stream, and a run seeded with torch.manual_seed repeats.
        """
        seed = torch.initial_seed()
        if self._rng is None or self._rng_seed != seed:
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
        return self._rng

    def read(self, record: Annotation):
        """Decode the record's frames; raises VideoReadError or EmptyWindowError."""
        return read_clip(
            self.source.path(record),
            self.n_frms,
            mode=self.sampling,
            window=record.window,
            image_size=self.image_size,
            backend=self.source.backend,
            rng=self.random_generator() if self.training else None,
            fps=self.source.fps,
        )

    def __getitem__(self, index: int) -> dict | Skipped:
        record = self.annotation[index]
        try:
            return make_sample(record, self.read(record), self.vis_processor)
        except (VideoReadError, EmptyWindowError) as error:  # incl. windows beyond the decoded end
            return unusable_sample(record, self.training, self.on_unreadable, self.n_frms, self.image_size, str(error))

    def collater(self, samples: Sequence[dict | Skipped]) -> dict:
        return collate(samples)

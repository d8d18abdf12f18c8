"""Data order that can be resumed mid-epoch and repeated exactly.

* :class:`ResumableSampler` -- a seeded permutation per epoch, split across ranks like
  ``DistributedSampler``, that can start at any position (the batches already trained on
  before an interruption are not seen twice, nor skipped).  In evaluation it can keep
  each video's questions together instead (``groups``): the questions of one video then
  land in the same batches on one rank, so its frames go through the ViT and the
  localizer's Q-Former once (``SeViLA.predict`` shares them within a batch, the feature
  cache across batches).
* :class:`SeededSamples` -- every sample's randomness (frame sampling, crop box) comes
  from (seed, epoch, index) and not from whichever worker happened to load it, so a
  resumed run draws the same frames as an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler


class ResumableSampler(Sampler[int]):
    def __init__(
        self, length: int, *, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1, pad: bool = True,
        groups: Sequence[Hashable] | None = None,
    ) -> None:
        """``groups``: one label per index (its video); without shuffling, the indices are
        ordered by group (first appearance, stable inside a group) and every rank takes a
        contiguous block of that order, so a group is cut at most at a rank boundary."""
        if groups is not None and (shuffle or len(groups) != length):
            raise ValueError("ResumableSampler groups need shuffle=False and one group label per index "
                             f"(got shuffle={shuffle}, {len(groups)} labels for {length} indices)")
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.groups = None if groups is None else list(groups)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch to draw, and how many of this rank's indices to leave out at the front."""
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if self.groups is not None:
            first: dict[Hashable, int] = {}
            for index, group in enumerate(self.groups):
                first.setdefault(group, index)
            order = self._padded(sorted(range(self.length), key=lambda i: first[self.groups[i]]))  # stable inside
            n, w = len(order), self.world_size
            return order[self.rank * n // w : (self.rank + 1) * n // w]  # contiguous: a group stays on one rank
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        return self._padded(order)[self.rank :: self.world_size]

    def _padded(self, order: list[int]) -> list[int]:
        """With ``pad``, ``order`` repeated from its start up to a multiple of the world size:
        every rank gets the same count; evaluation dedupes the repeats by id."""
        if not self.pad:
            return order
        total = math.ceil(self.length / self.world_size) * self.world_size
        return order + order[: total - len(order)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self._order()) - self.start)


class SeededSamples(Dataset):
    """Wraps a dataset so sample ``i`` of epoch ``e`` is drawn with seed f(seed, e, i)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        sample_seed = (self.seed * 1_000_003 + self.epoch * 7_919 + index) % (2**63)
        with torch.random.fork_rng(devices=[]):  # leaves the caller's stream (dropout) untouched
            torch.manual_seed(sample_seed)
            return self.dataset[index]

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

"""Pre-decoded clips in WebDataset shards, and the streaming dataset that reads them.

Decoding a 32-frame sample from a compressed video costs far more than reading 32 small
JPEGs, so ``python -m dataset_builders.shards`` decodes each distinct clip once (video id,
window, n_frms, image_size, "uniform" sampling) into tar shards.  A shard sample is::

    <key>.json        clip metadata: key, video, window, n_frms, image_size, mode,
                      indices, timestamps, fps, num_frames, duration
    <key>.0000.jpg .. one JPEG per sampled frame, in sampling order

``index.json`` next to the shards records the format version, the sampling parameters (a
reader refuses shards built for another n_frms or image_size), every shard with its clip
count, which shard holds each clip key, and every clip that could not be decoded (video,
path, reason, the questions that need it).

:class:`ShardDataset` streams one split: it joins each clip with the annotation records that
use it and builds samples with :func:`lavis_sevila.data.samples.make_sample`, so a sample
from shards equals one from the raw video up to JPEG error.  Shards are split between ranks
(``rank::world_size``), then between DataLoader workers, so in evaluation every question is
produced exactly once per epoch, in a fixed order.  A rank/worker without a shard produces
nothing: write at least ranks x workers shards (the builder's ``--min-shards``).  Training
shuffles each worker's shard order and the samples (buffer); the frames are the stored
uniform ones, so training from shards has no temporal jitter ("random" sampling needs raw
videos).  Questions whose clip is not in the shards are never dropped silently: see
``on_unreadable`` in :class:`ShardDataset`.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
import torchvision.io
import webdataset as wds

from lavis_sevila.data.samples import (
    Skipped, check_unreadable_policy, collate, make_sample, unreadable_sample, unusable_sample,
)
from lavis_sevila.data.schema import Annotation
from lavis_sevila.video.clip import Clip, EmptyWindowError

FORMAT = "lavis_sevila.shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
SAMPLING_MODE = "uniform"


class ShardIndexError(ValueError):
    """The shards cannot serve this request (wrong format or sampling, missing clips)."""


def clip_key(video: str, window: Optional[Sequence[float]], n_frms: int, image_size: int, mode: str = SAMPLING_MODE) -> str:
    """A short, dot-free name for one decoded clip (WebDataset keys end at the first dot)."""
    spec = [video, None if window is None else [float(window[0]), float(window[1])], int(n_frms), int(image_size), mode]
    return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:24]


def frame_name(position: int) -> str:
    return f"{position:04d}.jpg"


def encode_clip(clip: Clip, *, key: str, video: str, window: Optional[Sequence[float]], quality: int) -> dict[str, Any]:
    """The shard sample of one clip (a dict for ``webdataset.ShardWriter.write``)."""
    n, _, height, width = clip.frames.shape
    meta = {
        "key": key,
        "video": video,
        "window": None if window is None else [float(window[0]), float(window[1])],
        "n_frms": int(n),
        "image_size": int(height),
        "mode": SAMPLING_MODE,
        "indices": [int(i) for i in clip.indices],
        "timestamps": [float(t) for t in clip.timestamps],
        "fps": float(clip.fps),
        "num_frames": int(clip.num_frames),
        "duration": float(clip.duration),
    }
    sample: dict[str, Any] = {"__key__": key, "json": json.dumps(meta).encode()}
    for position, frame in enumerate(clip.frames):
        sample[frame_name(position)] = torchvision.io.encode_jpeg(frame, quality=quality).numpy().tobytes()
    return sample


def decode_clip(sample: dict[str, Any]) -> tuple[dict[str, Any], Clip]:
    """Inverse of :func:`encode_clip` for a sample read by WebDataset (bytes per file)."""
    meta = json.loads(sample["json"])
    names = [frame_name(position) for position in range(meta["n_frms"])]
    missing = [name for name in names if name not in sample]
    if missing:
        raise ShardIndexError(f"clip {meta['key']} in {sample.get('__url__')} lacks frames {missing}")
    jpegs = [torch.frombuffer(bytearray(sample[name]), dtype=torch.uint8) for name in names]
    frames = torch.stack(torchvision.io.decode_jpeg(jpegs, mode=torchvision.io.ImageReadMode.RGB))
    clip = Clip(
        frames=frames,
        indices=np.asarray(meta["indices"], dtype=np.int64),
        timestamps=np.asarray(meta["timestamps"], dtype=np.float64),
        fps=float(meta["fps"]),
        num_frames=int(meta["num_frames"]),
        duration=float(meta["duration"]),
    )
    return meta, clip


@dataclass
class ShardIndex:
    """``index.json``: what a shard folder holds and how it was sampled."""

    root: Path
    n_frms: int
    image_size: int
    quality: int
    shards: list[dict[str, Any]]  # {"file": name relative to root, "clips": count}
    clips: dict[str, str]  # clip key -> shard file
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"video", "window", "path", "reason", "questions"}
    mode: str = SAMPLING_MODE
    sources: dict[str, Any] = field(default_factory=dict)  # how it was built (annotations, videos)

    @property
    def shard_paths(self) -> list[str]:
        return [str(self.root / shard["file"]) for shard in self.shards]

    def failure_reasons(self) -> dict[str, str]:
        """clip key -> why it is not in the shards."""
        return {item["key"]: item["reason"] for item in self.failed}

    def check_sampling(self, n_frms: int, image_size: int) -> None:
        if (self.n_frms, self.image_size, self.mode) != (n_frms, image_size, SAMPLING_MODE):
            raise ShardIndexError(
                f"shards in {self.root} hold {self.n_frms} {self.mode} frames at {self.image_size} px; "
                f"{n_frms} uniform frames at {image_size} px were asked for: rebuild them with "
                f"python -m dataset_builders.shards --n-frms {n_frms} --image-size {image_size}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sampling": {"n_frms": self.n_frms, "image_size": self.image_size, "mode": self.mode, "quality": self.quality},
            "count": len(self.clips),
            "num_failed": len(self.failed),
            "shards": self.shards,
            "clips": self.clips,
            "failed": self.failed,
            "sources": self.sources,
        }

    def save(self) -> Path:
        path = self.root / INDEX_NAME
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(partial, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ShardIndex":
        """Read ``index.json`` (or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / INDEX_NAME
        if not path.is_file():
            raise ShardIndexError(f"no shard index at {path} (build one with python -m dataset_builders.shards)")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ShardIndexError(
                f"{path} is not a {FORMAT} index of version {FORMAT_VERSION} "
                f"(format {data.get('format')!r}, version {data.get('version')!r})"
            )
        sampling = data["sampling"]
        index = cls(
            root=path.parent,
            n_frms=int(sampling["n_frms"]),
            image_size=int(sampling["image_size"]),
            quality=int(sampling["quality"]),
            mode=str(sampling["mode"]),
            shards=list(data["shards"]),
            clips=dict(data["clips"]),
            failed=list(data["failed"]),
            sources=dict(data.get("sources", {})),
        )
        absent = [p for p in index.shard_paths if not os.path.isfile(p)]
        if absent:
            raise ShardIndexError(f"{path} lists shards that do not exist: {absent[:5]}")
        return index


def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _distributed() -> tuple[int, int]:
    """(rank, world size) of the process group; in a DataLoader worker that does not see
    the group (a start method other than fork), the launcher's RANK/WORLD_SIZE, which
    workers inherit."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if torch.utils.data.get_worker_info() is not None and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


class ShardDataset(wds.DataPipeline):
    """Samples of one split streamed from shards (module docstring).

    ``rank``/``world_size`` default to torch.distributed's (0/1 when it is not initialised),
    read each time the split is needed (iterating, ``len``), not at construction: a dataset
    built before the process group existed must still read only its rank's shards.  Pass
    them to split by hand.  Questions whose clip is absent from the shards (it failed
    to decode at build time, or the shards were built from other annotations):

    - training: a :class:`~lavis_sevila.data.samples.Skipped` marker each, counted by the
      runner like an unreadable raw video;
    - evaluation, ``on_unreadable="fail"``: ShardIndexError at construction, listing them;
    - evaluation, ``on_unreadable="unanswered"``: an ``unanswered_sample`` each (kept, to be
      scored wrong).

    Markers and unanswered samples come from rank 0, worker 0, so they too appear once.
    """

    def __init__(
        self,
        index: ShardIndex | str | os.PathLike,
        records: Sequence[Annotation],
        vis_processor: Callable[[torch.Tensor], torch.Tensor],
        *,
        training: bool,
        n_frms: int,
        image_size: int,
        on_unreadable: str = "fail",
        shuffle_buffer: int = 256,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        super().__init__()
        check_unreadable_policy(on_unreadable)
        self.on_unreadable = on_unreadable
        if not records:
            raise ValueError("no annotation records: an empty split is a configuration error")
        self.index = index if isinstance(index, ShardIndex) else ShardIndex.load(index)
        self.index.check_sampling(n_frms, image_size)
        self.vis_processor = vis_processor
        self.training = training
        self.n_frms, self.image_size = n_frms, image_size
        self.shuffle_buffer = shuffle_buffer
        self._rank, self._world_size = rank, world_size
        if (rank is None) != (world_size is None):
            raise ValueError("pass both rank and world_size, or neither (torch.distributed's)")
        self._check_partition()
        self.annotation = list(records)
        self.by_key: dict[str, list[Annotation]] = {}
        self.missing: list[tuple[Annotation, str]] = []
        reasons = self.index.failure_reasons()
        for record in self.annotation:
            key = clip_key(record.video, record.window, n_frms, image_size)
            if key in self.index.clips:
                self.by_key.setdefault(key, []).append(record)
            else:
                reason = reasons.get(key, "its clip is not in these shards (built from other annotations?)")
                self.missing.append((record, f"video {record.video}: {reason}"))
        if self.missing and not training and on_unreadable == "fail":
            listed = "\n".join(f"  {record.qid}: {reason}" for record, reason in self.missing[:20])
            raise ShardIndexError(
                f"{len(self.missing)} of {len(self.annotation)} questions have no clip in {self.index.root}:\n{listed}\n"
                "(set on_unreadable: unanswered to count them as wrong instead)"
            )
        if self.missing:
            warnings.warn(f"{len(self.missing)} of {len(self.annotation)} questions have no clip in the shards; "
                          f"they are reported as {'skipped' if training else 'unanswered'}")
        self.shard_urls = self.index.shard_paths
        self._epoch = 0
        self.pipeline = [
            self._urls,
            wds.tarfile_to_samples(handler=wds.reraise_exception),
            self._samples,
        ]
        if training:
            self.pipeline.append(self._shuffled)

    @property
    def rank(self) -> int:
        return _distributed()[0] if self._rank is None else self._rank

    @property
    def world_size(self) -> int:
        return _distributed()[1] if self._world_size is None else self._world_size

    def _check_partition(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside world size {self.world_size}")

    @property
    def my_urls(self) -> list[str]:
        """This rank's shards (``rank::world_size``), for the process group as it is now."""
        self._check_partition()
        return self.shard_urls[self.rank:: self.world_size]

    def __len__(self) -> int:
        """Samples this rank produces per epoch (all its workers together)."""
        mine = set(self.my_urls)
        count = sum(len(records) for key, records in self.by_key.items()
                    if str(self.index.root / self.index.clips[key]) in mine)
        return count + (len(self.missing) if self.rank == 0 else 0)

    def __iter__(self) -> Iterator[Any]:
        self._epoch += 1
        return super().__iter__()

    def _rng(self, purpose: str) -> random.Random:
        """Fresh per epoch, rank and worker (each worker has its own torch seed, drawn anew
        every epoch); repeatable under torch.manual_seed."""
        return random.Random(f"{torch.initial_seed()}-{self.rank}-{self._epoch}-{purpose}")

    def _urls(self) -> Iterator[dict[str, str]]:
        worker, num_workers = _worker()
        if len(self.shard_urls) < self.world_size * num_workers:
            warnings.warn(f"{len(self.shard_urls)} shards for {self.world_size} ranks x {num_workers} workers: "
                          "some workers get no data; build more shards (--min-shards)")
        urls = self.my_urls[worker::num_workers]
        if self.training:
            urls = list(urls)
            self._rng("shards").shuffle(urls)
        for url in urls:
            yield {"url": url}

    def _first_partition(self) -> bool:
        return self.rank == 0 and _worker()[0] == 0

    def _missing_samples(self) -> Iterator[dict | Skipped]:
        for record, reason in self.missing:
            yield unreadable_sample(record, self.training, self.n_frms, self.image_size, reason)

    def _samples(self, shard_samples: Iterable[dict[str, Any]]) -> Iterator[dict | Skipped]:
        if self._first_partition():
            yield from self._missing_samples()
        for raw in shard_samples:
            records = self.by_key.get(raw["__key__"])
            if not records:
                continue  # a clip of another split sharing these shards
            meta, clip = decode_clip(raw)
            if (meta["n_frms"], meta["image_size"]) != (self.n_frms, self.image_size):
                raise ShardIndexError(f"clip {meta['key']} in {raw.get('__url__')} disagrees with index.json")
            for record in records:
                try:
                    yield make_sample(record, clip, self.vis_processor)
                except EmptyWindowError as error:  # windows beyond the decoded end: as unreadable
                    yield unusable_sample(record, self.training, self.on_unreadable, self.n_frms, self.image_size, str(error))

    def _shuffled(self, samples: Iterable[Any]) -> Iterator[Any]:
        rng = self._rng("samples")
        buffer: list[Any] = []
        for sample in samples:
            buffer.append(sample)
            if len(buffer) >= self.shuffle_buffer:
                pick = rng.randrange(len(buffer))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def collater(self, samples: Sequence[dict | Skipped]) -> dict:
        return collate(samples)


"""Decode every distinct clip of some annotation files once, into WebDataset shards.

    python -m dataset_builders.shards --annotations data/nextqa/val.jsonl \\
        --videos /data/NExTVideo --pattern "{video}.mp4" --output shards/nextqa_val \\
        --n-frms 32 --image-size 224 --quality 90 --workers 2

A clip is (video id, window, n_frms, image_size, "uniform" sampling): questions about the
same video and window share one.  Each is decoded with ``lavis_sevila.video.read_clip`` and
stored as n JPEGs plus metadata (format: ``lavis_sevila.data.shards``); ``index.json`` in
the output folder lists the shards, which shard holds each clip, the sampling parameters and
every clip that could not be decoded, with its path and the reason.  Unreadable videos are
printed and counted, never dropped silently; the streaming dataset reports the questions
that needed them.  Build one shard folder per split, so evaluation reads only its split.

Shards: ``--maxcount`` clips each; by default chosen so that there are at least
``--min-shards`` shards (8), since each DataLoader worker of each rank reads whole shards and a
worker without a shard idles.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
import webdataset as wds

from lavis_sevila.data.schema import Annotation, read_annotations
from lavis_sevila.data.shards import INDEX_NAME, ShardIndex, clip_key, encode_clip
from lavis_sevila.datasets.video_dataset import FrameSource
from lavis_sevila.diskspace import explain_full_disk
from lavis_sevila.video import EmptyWindowError, VideoReadError, read_clip

SHARD_PATTERN = "shard-%06d.tar"


@dataclass(frozen=True)
class ClipTask:
    """One clip to decode, and the questions that need it."""

    key: str
    video: str
    window: Optional[tuple[float, float]]
    path: str
    qids: tuple[str, ...]


@dataclass(frozen=True)
class BuildOptions:
    n_frms: int = 32
    image_size: int = 224
    quality: int = 90


def plan_clips(records: Sequence[Annotation], source: FrameSource, n_frms: int, image_size: int) -> list[ClipTask]:
    """The distinct clips of ``records``, in order of first use."""
    order: dict[str, dict[str, Any]] = {}
    for record in records:
        window = record.window
        key = clip_key(record.video, window, n_frms, image_size)
        entry = order.setdefault(key, {"video": record.video, "window": window, "path": str(source.path(record)), "qids": []})
        entry["qids"].append(record.qid)
    return [ClipTask(key, e["video"], e["window"], e["path"], tuple(e["qids"])) for key, e in order.items()]


def decode_task(task: ClipTask, options: BuildOptions, source: FrameSource) -> tuple[ClipTask, Optional[dict[str, Any]], str]:
    """(task, shard sample or None, reason when None).  Runs in a worker process."""
    try:
        clip = read_clip(task.path, options.n_frms, mode="uniform", window=task.window, image_size=options.image_size,
                         backend=source.backend, fps=source.fps)
    except (VideoReadError, EmptyWindowError) as error:
        return task, None, str(error)
    return task, encode_clip(clip, key=task.key, video=task.video, window=task.window, quality=options.quality), ""


def _decode_star(args: tuple[ClipTask, BuildOptions, FrameSource]):
    return decode_task(*args)


def decoded(
    tasks: Sequence[ClipTask], options: BuildOptions, source: FrameSource, workers: int
) -> Iterator[tuple[ClipTask, Optional[dict], str]]:
    """Decode in ``workers`` processes, yielding results in task order (deterministic shards)."""
    if workers <= 1:
        for task in tasks:
            yield decode_task(task, options, source)
        return
    # one torch thread per worker: a forked child whose parent already ran OpenMP-parallel torch
    # code hangs in its first parallel region otherwise (torch's DataLoader does the same)
    with multiprocessing.get_context("fork").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield from pool.imap(_decode_star, [(task, options, source) for task in tasks], chunksize=1)


def clear_output(output: Path, overwrite: bool) -> None:
    old = sorted(output.glob("shard-*.tar")) + ([output / INDEX_NAME] if (output / INDEX_NAME).exists() else [])
    if old and not overwrite:
        raise FileExistsError(f"{output} already holds shards ({old[0].name} ...); pass --overwrite to replace them")
    for path in old:
        path.unlink()
    output.mkdir(parents=True, exist_ok=True)


def default_maxcount(num_clips: int, min_shards: int) -> int:
    return max(1, min(1000, math.ceil(num_clips / max(1, min_shards))))


def build_shards(
    annotation_paths: Sequence[str | Path],
    source: FrameSource,
    output: str | Path,
    options: BuildOptions = BuildOptions(),
    *,
    maxcount: Optional[int] = None,
    min_shards: int = 8,
    workers: int = 2,
    overwrite: bool = False,
    log=print,
) -> ShardIndex:
    """Write the shards and ``index.json`` for the records of ``annotation_paths``; returns the index."""
    if not 1 <= options.quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {options.quality}")
    output = Path(output)
    records = [record for path in annotation_paths for record in read_annotations(path)]
    tasks = plan_clips(records, source, options.n_frms, options.image_size)
    if not tasks:
        raise ValueError(f"no records in {', '.join(map(str, annotation_paths))}")
    clear_output(output, overwrite)
    maxcount = maxcount or default_maxcount(len(tasks), min_shards)
    log(f"{len(records)} records -> {len(tasks)} distinct clips of {options.n_frms} frames at {options.image_size} px; "
        f"{maxcount} clips per shard, {workers} worker(s)")
    clips: dict[str, str] = {}
    counts: dict[str, int] = {}
    failed: list[dict[str, Any]] = []
    began = time.perf_counter()
    try:
        with explain_full_disk(output):
            writer = wds.ShardWriter(str(output / SHARD_PATTERN), maxcount=maxcount, verbose=0)
            try:
                for done, (task, sample, reason) in enumerate(decoded(tasks, options, source, workers), start=1):
                    if sample is None:
                        failed.append({"key": task.key, "video": task.video, "window": task.window, "path": task.path,
                                       "reason": reason, "questions": list(task.qids)})
                        log(f"  FAILED {task.video}: {reason}")
                        continue
                    writer.write(sample)
                    name = Path(writer.fname).name
                    clips[task.key] = name
                    counts[name] = counts.get(name, 0) + 1
                    if done % 100 == 0:
                        log(f"  {done}/{len(tasks)} clips, {time.perf_counter() - began:.0f} s")
            finally:
                writer.close()
            for leftover in output.glob("shard-*.tar"):  # ShardWriter opens a first shard even when nothing is written
                if leftover.name not in counts:
                    leftover.unlink()
            index = ShardIndex(
                root=output,
                n_frms=options.n_frms,
                image_size=options.image_size,
                quality=options.quality,
                shards=[{"file": name, "clips": counts[name]} for name in sorted(counts)],
                clips=clips,
                failed=failed,
                sources={"annotations": [str(p) for p in annotation_paths], "videos": str(source.root),
                         "pattern": source.pattern, "fps": source.fps, "backend": source.backend},
            )
            index.save()
    except BaseException:
        # shards without their index.json cannot be used (and look finished): remove them
        for partial in output.glob("shard-*.tar"):
            partial.unlink(missing_ok=True)
        raise
    log(f"wrote {len(clips)} clips in {len(counts)} shards to {output} in {time.perf_counter() - began:.1f} s")
    if failed:
        questions = sum(len(item["questions"]) for item in failed)
        log(f"WARNING: {len(failed)} clip(s) ({questions} question(s)) could not be decoded; "
            f"they are listed under 'failed' in {output / INDEX_NAME}")
    return index


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", nargs="+", required=True, type=Path, help="annotation jsonl file(s)")
    parser.add_argument("--videos", required=True, type=Path, help="video root folder")
    parser.add_argument("--pattern", default="{video}.mp4", help='file (or frame folder) of a video id, e.g. "{video}.mp4"')
    parser.add_argument("--fps", type=float, default=None, help="frame rate of frame folders (not for video files)")
    parser.add_argument("--backend", default="auto", choices=("auto", "decord", "pyav"))
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--n-frms", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100")
    parser.add_argument("--maxcount", type=int, default=None, help="clips per shard (default: from --min-shards)")
    parser.add_argument("--min-shards", type=int, default=8, help="at least this many shards (>= ranks x workers)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already in --output")
    args = parser.parse_args(argv)
    source = FrameSource(root=args.videos, pattern=args.pattern, fps=args.fps, backend=args.backend)
    options = BuildOptions(n_frms=args.n_frms, image_size=args.image_size, quality=args.quality)
    index = build_shards(args.annotations, source, args.output, options, maxcount=args.maxcount,
                         min_shards=args.min_shards, workers=args.workers, overwrite=args.overwrite)
    if not index.clips:
        sys.exit(f"no clip could be decoded (see {args.output / INDEX_NAME})")


if __name__ == "__main__":
    main()

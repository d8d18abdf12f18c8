"""Samples per second: 32-frame samples from WebDataset shards vs decoded from mp4 files.

    python -m lavis_sevila.benchmarks.shards_vs_raw [--videos 32] [--n-frms 32] [--workers 2] [--image-size 224]

Generates synthetic videos sized like real data (default 320x320, 10 s at 30 fps, h264 at
crf 18 with a little pixel noise, about 0.5 Mbit/s, so decoding costs what it costs), builds
shards from them with ``dataset_builders.shards``, then reads every sample once each way
through a torch DataLoader with the same number of workers, the same eval processor and the
same ``collate``: the raw side is the map-style ``SevilaVideoDataset`` (decord), the shard side
``ShardDataset``.  Times include starting the workers.  Prints what it ran and the ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Optional, Sequence

from torch.utils.data import DataLoader

from dataset_builders.shards import BuildOptions, build_shards
from dataset_builders.synthetic import SyntheticConfig, generate
from lavis_sevila.data.samples import collate
from lavis_sevila.data.schema import read_annotations
from lavis_sevila.data.shards import ShardDataset
from lavis_sevila.datasets.video_dataset import FrameSource, SevilaVideoDataset
from lavis_sevila.processors import SevilaVideoEvalProcessor


def timed_pass(dataset, batch_size: int, workers: int) -> tuple[int, float]:
    """(samples, seconds) for one pass over ``dataset``, worker start-up included."""
    began = time.perf_counter()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    samples = sum(batch["num_samples"] for batch in loader)
    return samples, time.perf_counter() - began


def run(
    output: Path,
    *,
    videos: int = 32,
    n_frms: int = 32,
    workers: int = 2,
    image_size: int = 224,
    video_size: int = 320,
    seconds: int = 10,
    fps: float = 30.0,
    crf: int = 18,
    noise: float = 3.0,
    quality: int = 90,
    batch_size: int = 4,
    repeats: int = 2,
) -> dict:
    config = SyntheticConfig(train=0, val=0, test=videos, frames=int(seconds * fps), size=video_size, fps=fps,
                             window=int(fps), noise=noise, crf=crf, seed=0)
    began = time.perf_counter()
    paths = generate(output / "videos", config)
    generate_s = time.perf_counter() - began
    records = read_annotations(paths["test"])
    source = FrameSource(root=paths["videos"], pattern="{video}.mp4")
    began = time.perf_counter()
    index = build_shards([paths["test"]], source, output / "shards", BuildOptions(n_frms=n_frms, image_size=image_size,
                         quality=quality), min_shards=max(workers, 1), workers=workers, log=lambda *_: None)
    build_s = time.perf_counter() - began
    processor = SevilaVideoEvalProcessor(image_size=image_size)
    raw = SevilaVideoDataset(records, source, processor, n_frms=n_frms, training=False, image_size=image_size)
    sharded = ShardDataset(index, records, processor, training=False, n_frms=n_frms, image_size=image_size)
    runs = {"raw": [], "shards": []}
    for _ in range(repeats):  # alternate, so a busy moment on a shared machine hits both sides
        for name, dataset in (("raw", raw), ("shards", sharded)):
            runs[name].append(timed_pass(dataset, batch_size, workers))
    video_bytes = sum(p.stat().st_size for p in paths["videos"].glob("*.mp4"))
    shard_bytes = sum(Path(p).stat().st_size for p in index.shard_paths)
    return {
        "config": config, "n_frms": n_frms, "image_size": image_size, "workers": workers, "batch_size": batch_size,
        "quality": quality, "repeats": repeats, "generate_s": generate_s, "build_s": build_s, "runs": runs,
        "video_mb": video_bytes / 1e6, "shard_mb": shard_bytes / 1e6, "num_shards": len(index.shards),
        "bitrate_mbps": video_bytes * 8 / 1e6 / (videos * seconds),
    }


def report(result: dict) -> str:
    config = result["config"]
    rates = {name: [samples / seconds for samples, seconds in runs] for name, runs in result["runs"].items()}
    lines = [
        "shards vs raw video: samples/s through a torch DataLoader (same eval processor and collate)",
        f"videos      {config.test} x {config.frames} frames ({config.frames / config.fps:g} s at {config.fps:g} fps), "
        f"{config.size}x{config.size} h264 crf {config.crf}, noise {config.noise:g}: {result['video_mb']:.1f} MB "
        f"({result['bitrate_mbps']:.2f} Mbit/s)",
        f"samples     {result['n_frms']} frames at {result['image_size']}x{result['image_size']}, uniform; "
        f"batch {result['batch_size']}, {result['workers']} workers",
        f"shards      {result['num_shards']} tar files, JPEG quality {result['quality']}: {result['shard_mb']:.1f} MB, "
        f"built in {result['build_s']:.1f} s (generating the videos took {result['generate_s']:.1f} s)",
        "",
        f"{'source':<8} {'pass':>4} {'samples':>8} {'seconds':>8} {'samples/s':>10}",
    ]
    for name in ("raw", "shards"):
        for number, (samples, seconds) in enumerate(result["runs"][name], start=1):
            lines.append(f"{name:<8} {number:>4} {samples:>8} {seconds:>8.2f} {samples / seconds:>10.1f}")
    raw, sharded = median(rates["raw"]), median(rates["shards"])
    lines += ["", f"median samples/s: raw {raw:.1f}, shards {sharded:.1f}; shards / raw = {sharded / raw:.1f}x (target >= 3x)"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=32, help="number of videos (= samples per pass)")
    parser.add_argument("--n-frms", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (and shard-building processes)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--video-size", type=int, default=320, help="side of the generated videos in pixels")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="passes per side")
    parser.add_argument("--output", type=Path, default=None, help="keep the videos and shards here (default: a temporary folder)")
    args = parser.parse_args(argv)
    options = dict(videos=args.videos, n_frms=args.n_frms, workers=args.workers, image_size=args.image_size,
                   video_size=args.video_size, seconds=args.seconds, fps=args.fps, batch_size=args.batch_size,
                   repeats=args.repeats)
    if args.output is not None:
        print(report(run(args.output, **options)))
        return
    with tempfile.TemporaryDirectory(prefix="shards_vs_raw_") as folder:
        print(report(run(Path(folder), **options)))


if __name__ == "__main__":
    main()

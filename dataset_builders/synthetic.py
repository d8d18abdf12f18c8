"""A tiny video QA benchmark where finding the right frames is the whole task.

Every video shows a static scene of grey and white distractor shapes.  During a short
window (``window`` of ``frames`` frames, placed at random) one more shape appears, in one
of five saturated colours.  The question names that shape ("What colour is the triangle
that appears?"); the options are always the same five colours in the same order, so the
answer letter follows from the target's colour alone, once it is seen.

Why colour, not shape: a randomly initialised tiny model learns colours from a few hundred
videos in a minute on CPU, but not shapes at 32 px (measured: chance-level shape accuracy
after 1,000 steps on 200 videos, while colour reached 98% in 600 steps).  The benchmark
must be learnable so that what it measures is the frame selection.

With 4 uniformly sampled frames of 32 and a 3-frame window, about 40% of the questions have
the target in a sampled frame (the generator prints the exact fraction for its test split),
so an answerer on uniform frames scores about 0.4 + 0.6 / 5 = 52% while a perfect localizer
allows 100%.  The same videos carry QVHighlights-style moment records ("a triangle
appears.") whose ``relevant_windows`` cover exactly the target frames, for localizer
training and moment retrieval.

Window in seconds: frame i is centred at time i / fps, so a target on frames t0 .. t0+w-1
gets the window ``[(t0 - 0.5) / fps, (t0 + w - 0.5) / fps]`` (start clipped at 0): a frame
time t is inside (start <= t <= end) exactly for the target frames, at any sampling.

Files written under ``--output``: ``videos/<video>.mp4``, ``<split>.jsonl`` (multiple-choice
records), ``<split>_moment.jsonl`` (moment records), ``synthetic.json`` (config and stats).
Everything is a function of the config: the same seed gives the same files.

    python -m dataset_builders.synthetic --output data/synthetic
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lavis_sevila.data.schema import Annotation, write_annotations
from lavis_sevila.video.sampling import frame_indices
from lavis_sevila.video.writer import X264_OPTIONS, write_video

SHAPES = ("circle", "square", "triangle", "cross", "bar")
# the answer options, in this fixed order
TARGET_COLOURS = {
    "red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 70, 245), "yellow": (240, 220, 30),
    "magenta": (225, 40, 225),
}
COLOURS = tuple(TARGET_COLOURS)
DISTRACTOR_COLOURS = {"white": (235, 235, 235), "grey": (140, 140, 140)}
BACKGROUND = (25, 25, 25)
SPLITS = ("train", "val", "test")
UNIFORM_KEYFRAMES = 4  # the number of keyframes the hit fraction is reported for


@dataclass
class SyntheticConfig:
    """Sizes and difficulty.  ``window`` is in frames; ``noise`` is the std of per-pixel noise."""

    train: int = 200
    val: int = 50
    test: int = 50
    frames: int = 32
    size: int = 64
    fps: float = 8.0
    window: int = 3
    distractors: int = 2
    noise: float = 0.0
    seed: int = 0
    codec: str = "libx264"
    crf: int = 12  # libx264 only: quality (lower is better; 12 keeps the flat shapes near-lossless)
    grid: int = 2  # the frame is cut into grid x grid cells; each object fills most of one cell
    target_colours: Sequence[str] = field(default_factory=lambda: tuple(TARGET_COLOURS))

    def __post_init__(self) -> None:
        counts = {"train": self.train, "val": self.val, "test": self.test}
        if any(count < 0 for count in counts.values()):
            raise ValueError(f"video counts must be >= 0, got {counts}")
        if not 1 <= self.window <= self.frames:
            raise ValueError(f"window must be 1..frames ({self.frames}), got {self.window}")
        if self.distractors + 1 > self.grid * self.grid:
            raise ValueError(f"{self.distractors} distractors + 1 target do not fit a {self.grid}x{self.grid} grid")
        if self.size % 2 or self.size // self.grid < 8:
            raise ValueError(f"size must be even and give cells of >= 8 px, got {self.size} with grid {self.grid}")
        unknown = set(self.target_colours) - set(TARGET_COLOURS)
        if unknown or not self.target_colours:
            raise ValueError(f"target colours must be some of {tuple(TARGET_COLOURS)}, got {tuple(self.target_colours)}")
        self.target_colours = tuple(self.target_colours)

    def count(self, split: str) -> int:
        return {"train": self.train, "val": self.val, "test": self.test}[split]


@dataclass(frozen=True)
class VideoPlan:
    """Everything random about one video, drawn before any pixel is drawn."""

    split: str
    index: int
    colour: str
    shape: str
    first: int  # first target frame
    target_cell: int
    distractors: tuple[tuple[str, str, int], ...]  # (shape, colour, cell)
    jitter: tuple[tuple[int, int], ...]  # per object (target first): offset inside its cell

    @property
    def video(self) -> str:
        return f"{self.split}_{self.index:05d}"

    def rng(self, config: SyntheticConfig, stream: int) -> np.random.Generator:
        """Random stream ``stream`` of this video: depends only on (seed, split, index)."""
        return np.random.default_rng([config.seed, SPLITS.index(self.split), self.index, stream])


def shape_mask(shape: str, side: int) -> np.ndarray:
    """bool [side, side]: a large, plain silhouette that stays recognisable at 16 px."""
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    c, half, arm = side / 2, side / 2, side / 6
    if shape == "circle":
        return (xs - c) ** 2 + (ys - c) ** 2 <= half**2
    if shape == "square":
        return np.ones((side, side), dtype=bool)
    if shape == "triangle":
        return np.abs(xs - c) <= ys / 2
    if shape == "cross":
        return (np.abs(xs - c) <= arm) | (np.abs(ys - c) <= arm)
    if shape == "bar":
        return np.abs(ys - c) <= arm
    raise ValueError(f"unknown shape {shape!r} (known: {SHAPES})")


def plan_video(config: SyntheticConfig, split: str, index: int) -> VideoPlan:
    """Draw one video's content from a seed that depends only on (seed, split, index)."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index, 0])
    cells = rng.permutation(config.grid * config.grid)[: config.distractors + 1]
    distractor_colours = tuple(DISTRACTOR_COLOURS)
    cell = config.size // config.grid
    slack = cell - object_side(config)
    return VideoPlan(
        split=split,
        index=index,
        colour=str(rng.choice(config.target_colours)),
        shape=str(rng.choice(SHAPES)),
        first=int(rng.integers(0, config.frames - config.window + 1)),
        target_cell=int(cells[0]),
        distractors=tuple(
            (str(rng.choice(SHAPES)), str(rng.choice(distractor_colours)), int(c)) for c in cells[1:]
        ),
        jitter=tuple((int(rng.integers(0, slack + 1)), int(rng.integers(0, slack + 1))) for _ in cells),
    )


def object_side(config: SyntheticConfig) -> int:
    return max(6, int(0.8 * (config.size // config.grid)))


def _stamp(canvas: np.ndarray, config: SyntheticConfig, shape: str, colour: tuple[int, int, int], cell: int, jitter: tuple[int, int]) -> None:
    side, step = object_side(config), config.size // config.grid
    top = (cell // config.grid) * step + jitter[0]
    left = (cell % config.grid) * step + jitter[1]
    region = canvas[top: top + side, left: left + side]
    region[shape_mask(shape, side)] = colour


def render(config: SyntheticConfig, plan: VideoPlan) -> np.ndarray:
    """uint8 [frames, size, size, 3]: the static scene, plus the target inside its window."""
    scene = np.empty((config.size, config.size, 3), dtype=np.uint8)
    scene[:] = BACKGROUND
    for (shape, colour, cell), jitter in zip(plan.distractors, plan.jitter[1:]):
        _stamp(scene, config, shape, DISTRACTOR_COLOURS[colour], cell, jitter)
    with_target = scene.copy()
    _stamp(with_target, config, plan.shape, TARGET_COLOURS[plan.colour], plan.target_cell, plan.jitter[0])
    frames = np.stack([scene] * config.frames)
    frames[plan.first: plan.first + config.window] = with_target
    if config.noise > 0:
        noise = plan.rng(config, 1).standard_normal(frames.shape, dtype=np.float32) * np.float32(config.noise)
        frames = np.clip(np.rint(frames + noise), 0, 255).astype(np.uint8)
    return frames


def encoder_options(config: SyntheticConfig) -> dict[str, str] | None:
    """libx264 settings: reproducible (one thread) at the configured quality."""
    if config.codec != "libx264":
        return None
    return {**X264_OPTIONS, "crf": str(config.crf)}


def target_window(config: SyntheticConfig, plan: VideoPlan) -> list[float]:
    """Seconds covering exactly the target frames' times (module docstring)."""
    start = max(0.0, (plan.first - 0.5) / config.fps)
    end = (plan.first + config.window - 0.5) / config.fps
    return [round(start, 6), round(end, 6)]


def records(config: SyntheticConfig, split: str, plan: VideoPlan) -> tuple[Annotation, Annotation]:
    """The multiple-choice record and the moment record of one video."""
    duration = config.frames / config.fps
    windows = [target_window(config, plan)]
    common = dict(schema_version=1, dataset="synthetic", video=plan.video, duration=duration, relevant_windows=windows)
    question = Annotation(
        kind="multiple_choice",
        qid=f"synthetic_{plan.video}",
        question=f"What colour is the {plan.shape} that appears?",
        options=list(COLOURS),
        answer=COLOURS.index(plan.colour),
        qtype=plan.shape,
        extra={"target_frames": [plan.first, plan.first + config.window - 1], "split": split},
        **common,
    )
    moment = Annotation(
        kind="moment",
        qid=f"synthetic_{plan.video}_moment",
        question=f"a {plan.shape} appears.",
        qtype=plan.shape,
        extra={"target_frames": [plan.first, plan.first + config.window - 1], "split": split},
        **common,
    )
    return question, moment


def uniform_hit_fraction(config: SyntheticConfig, plans: Sequence[VideoPlan], keyframes: int = UNIFORM_KEYFRAMES) -> float:
    """Fraction of videos whose target shows in one of ``keyframes`` uniformly sampled frames."""
    if not plans:
        return float("nan")
    picked = set(frame_indices(config.frames, config.fps, keyframes, "uniform").tolist())
    hits = sum(any(plan.first <= i < plan.first + config.window for i in picked) for plan in plans)
    return hits / len(plans)


def generate(output_dir: str | Path, config: SyntheticConfig | None = None) -> dict[str, Path]:
    """Write the benchmark; returns paths: "videos", "<split>", "<split>_moment", "summary"."""
    config = config or SyntheticConfig()
    output = Path(output_dir)
    videos = output / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"videos": videos}
    stats: dict[str, dict] = {}
    for split in SPLITS:
        plans = [plan_video(config, split, i) for i in range(config.count(split))]
        for plan in plans:
            write_video(videos / f"{plan.video}.mp4", render(config, plan), config.fps, codec=config.codec,
                        options=encoder_options(config))
        pairs = [records(config, split, plan) for plan in plans]
        paths[split] = output / f"{split}.jsonl"
        paths[f"{split}_moment"] = output / f"{split}_moment.jsonl"
        write_annotations(paths[split], [question for question, _ in pairs])
        write_annotations(paths[f"{split}_moment"], [moment for _, moment in pairs])
        hit = uniform_hit_fraction(config, plans)
        stats[split] = {
            "videos": len(plans),
            "uniform_hit_fraction": hit,
            "uniform_accuracy_bound": hit + (1 - hit) / len(COLOURS) if plans else float("nan"),
            "answers": {colour: sum(p.colour == colour for p in plans) for colour in COLOURS},
        }
    paths["summary"] = output / "synthetic.json"
    summary = {"config": asdict(config), "options": list(COLOURS), "shapes": list(SHAPES), "uniform_keyframes": UNIFORM_KEYFRAMES, "splits": stats}
    paths["summary"].write_text(json.dumps(summary, indent=2, default=list) + "\n")
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, type=Path, help="folder for videos/ and the jsonl files")
    parser.add_argument("--num-videos", nargs=3, type=int, metavar=("TRAIN", "VAL", "TEST"),
                        default=(defaults.train, defaults.val, defaults.test), help="videos per split")
    parser.add_argument("--frames", type=int, default=defaults.frames, help="frames per video")
    parser.add_argument("--size", type=int, default=defaults.size, help="frame side in pixels")
    parser.add_argument("--fps", type=float, default=defaults.fps)
    parser.add_argument("--window", type=int, default=defaults.window, help="frames showing the target")
    parser.add_argument("--distractors", type=int, default=defaults.distractors, help="distractor objects per video")
    parser.add_argument("--noise", type=float, default=defaults.noise, help="std of per-pixel noise (0-255 scale)")
    parser.add_argument("--grid", type=int, default=defaults.grid, help="objects are placed in a grid x grid layout")
    parser.add_argument("--codec", default=defaults.codec, help="PyAV encoder (libx264, mpeg4, ...)")
    parser.add_argument("--crf", type=int, default=defaults.crf, help="libx264 quality (lower is better)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    train, val, test = args.num_videos
    config = SyntheticConfig(train=train, val=val, test=test, frames=args.frames, size=args.size, fps=args.fps,
                             window=args.window, distractors=args.distractors, noise=args.noise, seed=args.seed,
                             codec=args.codec, crf=args.crf, grid=args.grid)
    began = time.perf_counter()
    paths = generate(args.output, config)
    summary = json.loads(paths["summary"].read_text())
    print(f"wrote {train + val + test} videos to {paths['videos']} in {time.perf_counter() - began:.1f} s")
    for split in SPLITS:
        stats = summary["splits"][split]
        print(f"  {split}: {stats['videos']} videos -> {paths[split].name}, {paths[split + '_moment'].name}")
    test_stats = summary["splits"]["test"]
    print(f"test split: the target shows in one of {UNIFORM_KEYFRAMES} uniformly sampled frames for "
          f"{100 * test_stats['uniform_hit_fraction']:.1f}% of the questions (a uniform-sampling answerer can reach "
          f"about {100 * test_stats['uniform_accuracy_bound']:.1f}%; a perfect localizer 100%)")


if __name__ == "__main__":
    main()

"""A tiny video QA benchmark where the question says which moment matters.

Every video shows ``events`` short events at different times: during ``window`` frames one
large shape in a saturated colour fills the middle of an otherwise dark frame (a red
triangle in frames 5-7, a blue circle in frames 20-22, a green bar later ...).  The events
of one video have different shapes and different colours.  The question names the shape of
one of them ("What colour is the triangle?"); the options are always the same five colours
in the same order, and the other events show option colours too.  So a localizer that only
finds "a colourful frame" picks the wrong event about as often as the right one: finding
the frames that answer *this* question is language-aware.

With 4 uniformly sampled frames of 32 and a 3-frame window, about 40% of the questions have
the named event in a sampled frame (the generator prints the exact fraction for its test
split).  The same videos carry QVHighlights-style moment records, one per event ("a
triangle appears."), whose ``relevant_windows`` cover exactly that event's frames, for
localizer pre-training and moment retrieval; ``<split>_oracle.jsonl`` repeats the
questions with the clip window set to the named event (the oracle row: the answerer given
the true window's frames).

Stage 0 (``pretrain_backbone``, the tiny backbone's stand-in for BLIP-2 pre-training) reads
``train_image_text.jsonl``: generic questions about single frames of the *train* videos
("Is there a red circle in the frame?", "What colour is the circle?", "What shape is in the
frame?", the same colour question as multiple choice with shuffled options).  Nothing in
it says which frame answers which video question.

Window in seconds: frame i is centred at time i / fps, so an event on frames t0 .. t0+w-1
gets the window ``[(t0 - 0.5) / fps, (t0 + w - 0.5) / fps]`` (start clipped at 0): a frame
time t is inside (start <= t <= end) exactly for the event's frames, at any sampling.

Files written under ``--output``: ``videos/<video>.mp4``, ``<split>.jsonl`` (multiple-choice
records), ``<split>_moment.jsonl`` (moment records), ``<split>_oracle.jsonl``,
``train_image_text.jsonl``, ``synthetic.json`` (config and stats).  Everything is a
function of the config: the same seed gives the same files.

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

SHAPES = ("square", "ring", "triangle", "cross", "bar")
# the answer options, in this fixed order
TARGET_COLOURS = {
    "red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 70, 245), "yellow": (240, 220, 30),
    "magenta": (225, 40, 225),
}
COLOURS = tuple(TARGET_COLOURS)
BACKGROUND = (25, 25, 25)
SPLITS = ("train", "val", "test")
UNIFORM_KEYFRAMES = 4  # the number of keyframes the hit fraction is reported for
NONE = "none"  # stage-0 answer when the frame does not show what is asked about
IMAGE_TEXT_FILE = "train_image_text.jsonl"


@dataclass
class SyntheticConfig:
    """Sizes and difficulty.  ``window`` is in frames; ``noise`` is the std of per-pixel noise."""

    train: int = 200
    val: int = 50
    test: int = 100
    frames: int = 32
    size: int = 32
    fps: float = 8.0
    window: int = 3
    events: int = 3  # events per video, each a different shape and colour; one is asked about
    noise: float = 0.0
    seed: int = 0
    codec: str = "libx264rgb"  # lossless RGB: every run decodes to the same pixels (video.writer)
    crf: int = 12  # libx264 only: quality (lower is better; 12 keeps the flat shapes near-lossless)
    jitter: int = 2  # pixels the shape may move off the frame's centre, per event
    blank_frames: int = 3  # stage 0: frames without an event asked about per train video
    fixed_options: bool = True  # stage 0: multiple choice lists the colours in the benchmark's order
    target_colours: Sequence[str] = field(default_factory=lambda: tuple(TARGET_COLOURS))

    def __post_init__(self) -> None:
        counts = {"train": self.train, "val": self.val, "test": self.test}
        if any(count < 0 for count in counts.values()):
            raise ValueError(f"video counts must be >= 0, got {counts}")
        if not 1 <= self.window <= self.frames:
            raise ValueError(f"window must be 1..frames ({self.frames}), got {self.window}")
        if not 1 <= self.events <= len(SHAPES):
            raise ValueError(f"events must be 1..{len(SHAPES)} (one shape each), got {self.events}")
        if self.events * self.window + (self.events - 1) > self.frames:
            raise ValueError(f"{self.events} events of {self.window} frames, one frame apart, do not fit "
                             f"{self.frames} frames")
        if self.size % 2 or self.size < 16:
            raise ValueError(f"size must be even and >= 16, got {self.size}")
        unknown = set(self.target_colours) - set(TARGET_COLOURS)
        if unknown or len(self.target_colours) < self.events:
            raise ValueError(f"target colours must be at least {self.events} of {tuple(TARGET_COLOURS)}, "
                             f"got {tuple(self.target_colours)}")
        if not 0 <= self.jitter <= (self.size - object_side(self)) // 2:
            raise ValueError(f"jitter must be 0..{(self.size - object_side(self)) // 2} px at size {self.size}, "
                             f"got {self.jitter}")
        if self.blank_frames < 0:
            raise ValueError(f"blank_frames must be >= 0, got {self.blank_frames}")
        self.target_colours = tuple(self.target_colours)

    def count(self, split: str) -> int:
        return {"train": self.train, "val": self.val, "test": self.test}[split]


@dataclass(frozen=True)
class Event:
    shape: str
    colour: str
    first: int  # first frame showing it
    offset: tuple[int, int]  # (top, left) of the shape inside the frame

    def frames(self, window: int) -> range:
        return range(self.first, self.first + window)


@dataclass(frozen=True)
class VideoPlan:
    """Everything random about one video, drawn before any pixel is drawn."""

    split: str
    index: int
    events: tuple[Event, ...]  # in time order
    target: int  # index into events of the one the question names

    @property
    def video(self) -> str:
        return f"{self.split}_{self.index:05d}"

    @property
    def asked(self) -> Event:
        return self.events[self.target]

    # the old single-target names, kept for callers that only need the named event
    @property
    def colour(self) -> str:
        return self.asked.colour

    @property
    def shape(self) -> str:
        return self.asked.shape

    @property
    def first(self) -> int:
        return self.asked.first

    def rng(self, config: SyntheticConfig, stream: int) -> np.random.Generator:
        """Random stream ``stream`` of this video: depends only on (seed, split, index)."""
        return np.random.default_rng([config.seed, SPLITS.index(self.split), self.index, stream])


def shape_mask(shape: str, side: int) -> np.ndarray:
    """bool [side, side]: a large, plain silhouette.

    Chosen to differ in which parts of the frame they fill (filled, hollow, pointed, a
    plus, a band), so a ViT with 8-px patches tells them apart after little training.
    """
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) + 0.5
    c, half, arm = side / 2, side / 2, side / 6
    if shape == "ring":
        radius = np.sqrt((xs - c) ** 2 + (ys - c) ** 2)
        return (radius <= half) & (radius >= half - side / 5)
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
    raise ValueError(f"unknown shape {shape!r} (known: {SHAPES + ('circle',)})")


def object_side(config: SyntheticConfig) -> int:
    return int(0.75 * config.size)


def event_starts(config: SyntheticConfig, rng: np.random.Generator) -> list[int]:
    """First frames of the events: windows apart by at least one frame, spread at random."""
    slack = config.frames - config.events * config.window - (config.events - 1)
    cuts = np.sort(rng.integers(0, slack + 1, size=config.events))
    return [int(cut) + j * (config.window + 1) for j, cut in enumerate(cuts)]


def plan_video(config: SyntheticConfig, split: str, index: int) -> VideoPlan:
    """Draw one video's content from a seed that depends only on (seed, split, index)."""
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index, 0])
    shapes = rng.permutation(SHAPES)[: config.events]
    colours = rng.permutation(config.target_colours)[: config.events]
    starts = event_starts(config, rng)
    centre = (config.size - object_side(config)) // 2
    events = tuple(
        Event(shape=str(shape), colour=str(colour), first=start,
              offset=tuple(int(centre + d) for d in rng.integers(-config.jitter, config.jitter + 1, size=2)))
        for shape, colour, start in zip(shapes, colours, starts)
    )
    return VideoPlan(split=split, index=index, events=events, target=int(rng.integers(0, config.events)))


def render(config: SyntheticConfig, plan: VideoPlan) -> np.ndarray:
    """uint8 [frames, size, size, 3]: a dark frame, each event's shape inside its window."""
    frames = np.empty((config.frames, config.size, config.size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    side = object_side(config)
    mask_cache = {shape: shape_mask(shape, side) for shape in {e.shape for e in plan.events}}
    for event in plan.events:
        top, left = event.offset
        for i in event.frames(config.window):
            region = frames[i, top: top + side, left: left + side]
            region[mask_cache[event.shape]] = TARGET_COLOURS[event.colour]
    if config.noise > 0:
        noise = plan.rng(config, 1).standard_normal(frames.shape, dtype=np.float32) * np.float32(config.noise)
        frames = np.clip(np.rint(frames + noise), 0, 255).astype(np.uint8)
    return frames


def encoder_options(config: SyntheticConfig) -> dict[str, str] | None:
    """libx264's settings at the configured quality (one thread); None for other codecs,
    which get the writer's defaults (``libx264rgb``: lossless, one thread)."""
    if config.codec != "libx264":
        return None
    return {**X264_OPTIONS, "crf": str(config.crf)}


def event_window(config: SyntheticConfig, event: Event) -> list[float]:
    """Seconds covering exactly the event's frame times (module docstring)."""
    start = max(0.0, (event.first - 0.5) / config.fps)
    end = (event.first + config.window - 0.5) / config.fps
    return [round(start, 6), round(end, 6)]


def target_window(config: SyntheticConfig, plan: VideoPlan) -> list[float]:
    return event_window(config, plan.asked)


def clip_window(config: SyntheticConfig, event: Event) -> tuple[float, float]:
    """A clip window [start, end] whose sampled range is exactly the event's frames.

    The sampler maps it to frames ``int(start * fps) .. int(end * fps)`` (exclusive); a
    quarter frame past each edge keeps the truncation off the boundary.
    """
    duration = config.frames / config.fps
    start = (event.first + 0.25) / config.fps
    end = min(duration, (event.first + config.window + 0.25) / config.fps)
    return round(start, 6), round(end, 6)


def question_text(shape: str) -> str:
    return f"What colour is the {shape}?"


def records(config: SyntheticConfig, split: str, plan: VideoPlan) -> tuple[Annotation, list[Annotation], Annotation]:
    """The multiple-choice record, one moment record per event, and the oracle record."""
    duration = config.frames / config.fps
    asked = plan.asked
    extra = {
        "target_frames": [asked.first, asked.first + config.window - 1],
        "events": [[e.shape, e.colour, e.first] for e in plan.events],
        "split": split,
    }
    common = dict(schema_version=1, dataset="synthetic", video=plan.video, duration=duration)
    question = Annotation(
        kind="multiple_choice",
        qid=f"synthetic_{plan.video}",
        question=question_text(asked.shape),
        options=list(COLOURS),
        answer=COLOURS.index(asked.colour),
        qtype=asked.shape,
        relevant_windows=[target_window(config, plan)],
        extra=extra,
        **common,
    )
    moments = [
        Annotation(
            kind="moment",
            qid=f"synthetic_{plan.video}_moment{j}",
            question=f"a {event.shape} appears.",
            qtype=event.shape,
            relevant_windows=[event_window(config, event)],
            extra={"target_frames": [event.first, event.first + config.window - 1], "split": split},
            **common,
        )
        for j, event in enumerate(plan.events)
    ]
    start, end = clip_window(config, asked)
    oracle = question.model_copy(update={"qid": f"synthetic_{plan.video}_oracle", "start": start, "end": end})
    return question, moments, oracle


# -- stage 0: image-text samples from single frames of the train videos ---------------------
def image_text_records(config: SyntheticConfig, plan: VideoPlan) -> list[dict]:
    """Generic questions about single frames of one train video (module docstring).

    Per event frame: "Is there a <colour> <shape> in the frame?" once true and once false,
    "What colour is the <shape>?" for its shape and for an absent one ("none"), "What shape
    is in the frame?", and the colour question as multiple choice with shuffled options.
    Per blank frame (``blank_frames`` of them): a false yes/no and the shape question.
    Every frame also gets "Is there a <shape> in the frame? Options: (<the colours>)", yes
    when that shape shows: the list of colours in the text must not decide the answer.
    """
    from lavis_sevila.data import prompts

    rng = plan.rng(config, 2)
    out: list[dict] = []

    def add(frame: int, task: str, question: str, answer: str) -> None:
        out.append({"video": plan.video, "frame": frame, "task": task, "question": question, "answer": answer})

    def false_pair(shown: Event | None) -> tuple[str, str]:
        while True:
            colour, shape = str(rng.choice(COLOURS)), str(rng.choice(SHAPES))
            if shown is None or (colour, shape) != (shown.colour, shown.shape):
                return colour, shape

    shown_at = {i: e for e in plan.events for i in e.frames(config.window)}
    blank = [i for i in range(config.frames) if i not in shown_at]
    blank = sorted(rng.permutation(blank)[: config.blank_frames].tolist()) if blank else []
    listed = "".join(f"{c} " for c in COLOURS)

    def shape_exists(frame: int, shape: str, answer: str) -> None:
        # the shape alone decides; a list of colours in the text must not (prompts list options so)
        add(frame, "exists_shape", f"Is there a {shape} in the frame? Options: ({listed})", answer)

    for frame in sorted(shown_at) + blank:
        event = shown_at.get(frame)
        colour, shape = false_pair(event)
        add(frame, "exists", f"Is there a {colour} {shape} in the frame?", prompts.NO)
        if event is None:
            add(frame, "shape", "What shape is in the frame?", NONE)
            shape_exists(frame, str(rng.choice(SHAPES)), prompts.NO)
            continue
        if rng.random() < 0.5:
            shape_exists(frame, event.shape, prompts.YES)
        else:
            shape_exists(frame, str(rng.choice([s for s in SHAPES if s != event.shape])), prompts.NO)
        add(frame, "exists", f"Is there a {event.colour} {event.shape} in the frame?", prompts.YES)
        add(frame, "colour", question_text(event.shape), event.colour)
        absent = str(rng.choice([s for s in SHAPES if s != event.shape]))
        add(frame, "colour", question_text(absent), NONE)
        add(frame, "shape", "What shape is in the frame?", event.shape)
        options = list(COLOURS) if config.fixed_options else [str(c) for c in rng.permutation(COLOURS)]
        add(frame, "multiple_choice", prompts.mc_qa_input(question_text(event.shape), options),
            prompts.answer_target(options.index(event.colour)))
    return out


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def uniform_hit_fraction(config: SyntheticConfig, plans: Sequence[VideoPlan], keyframes: int = UNIFORM_KEYFRAMES) -> float:
    """Fraction of videos whose named event shows in one of ``keyframes`` uniformly sampled frames."""
    if not plans:
        return float("nan")
    picked = set(frame_indices(config.frames, config.fps, keyframes, "uniform").tolist())
    hits = sum(any(i in picked for i in plan.asked.frames(config.window)) for plan in plans)
    return hits / len(plans)


def uniform_accuracy_bound(config: SyntheticConfig, plans: Sequence[VideoPlan], keyframes: int = UNIFORM_KEYFRAMES) -> float:
    """Best expected accuracy from ``keyframes`` uniform frames: right when the named event
    shows; otherwise a guess among the colours not seen on another event."""
    if not plans:
        return float("nan")
    picked = set(frame_indices(config.frames, config.fps, keyframes, "uniform").tolist())
    total = 0.0
    for plan in plans:
        seen = {e.colour for e in plan.events if any(i in picked for i in e.frames(config.window))}
        total += 1.0 if plan.colour in seen else 1.0 / (len(COLOURS) - len(seen))
    return total / len(plans)


def generate(output_dir: str | Path, config: SyntheticConfig | None = None) -> dict[str, Path]:
    """Write the benchmark; returns paths: "videos", "<split>", "<split>_moment",
    "<split>_oracle", "image_text", "summary"."""
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
        triples = [records(config, split, plan) for plan in plans]
        for suffix, rows in (("", [q for q, _, _ in triples]), ("_moment", [m for _, ms, _ in triples for m in ms]),
                             ("_oracle", [o for _, _, o in triples])):
            paths[split + suffix] = output / f"{split}{suffix}.jsonl"
            write_annotations(paths[split + suffix], rows)
        if split == "train":
            paths["image_text"] = output / IMAGE_TEXT_FILE
            write_jsonl(paths["image_text"], [row for plan in plans for row in image_text_records(config, plan)])
        stats[split] = {
            "videos": len(plans),
            "uniform_hit_fraction": uniform_hit_fraction(config, plans),
            "uniform_accuracy_bound": uniform_accuracy_bound(config, plans),
            "answers": {colour: sum(p.colour == colour for p in plans) for colour in COLOURS},
        }
    paths["summary"] = output / "synthetic.json"
    summary = {"config": asdict(config), "options": list(COLOURS), "shapes": list(SHAPES),
               "uniform_keyframes": UNIFORM_KEYFRAMES, "splits": stats}
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
    parser.add_argument("--window", type=int, default=defaults.window, help="frames showing each event")
    parser.add_argument("--events", type=int, default=defaults.events, help="events per video (one is asked about)")
    parser.add_argument("--noise", type=float, default=defaults.noise, help="std of per-pixel noise (0-255 scale)")
    parser.add_argument("--codec", default=defaults.codec, help="PyAV encoder (libx264rgb: lossless, libx264, mpeg4, ...)")
    parser.add_argument("--crf", type=int, default=defaults.crf, help="libx264 quality (lower is better)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    train, val, test = args.num_videos
    config = SyntheticConfig(train=train, val=val, test=test, frames=args.frames, size=args.size, fps=args.fps,
                             window=args.window, events=args.events, noise=args.noise, seed=args.seed,
                             codec=args.codec, crf=args.crf)
    began = time.perf_counter()
    paths = generate(args.output, config)
    summary = json.loads(paths["summary"].read_text())
    print(f"wrote {train + val + test} videos to {paths['videos']} in {time.perf_counter() - began:.1f} s")
    for split in SPLITS:
        stats = summary["splits"][split]
        print(f"  {split}: {stats['videos']} videos -> {paths[split].name}, {paths[split + '_moment'].name}")
    test_stats = summary["splits"]["test"]
    print(f"test split: the named event shows in one of {UNIFORM_KEYFRAMES} uniformly sampled frames for "
          f"{100 * test_stats['uniform_hit_fraction']:.1f}% of the questions (a uniform-sampling answerer can reach "
          f"about {100 * test_stats['uniform_accuracy_bound']:.1f}%; a perfect localizer 100%)")


if __name__ == "__main__":
    main()

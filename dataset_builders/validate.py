"""Check annotation jsonl files against our schema: ``python -m dataset_builders.validate FILE...``.

Prints every problem as ``file:line: field: message`` and exits 1 if there is any;
otherwise prints, per file, how many records of each dataset and kind it holds and how
many have an answer (or relevant windows), so a truncated or test-only file is noticed.

With ``--videos ROOT`` each record's video is opened too: a video that cannot be read, a
clip window that holds no frame of it, or relevant windows that end after its decoded end
(the annotation's ``duration`` can be wrong; the decoded frames are what training labels)
is a problem, counted in the summary.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from lavis_sevila.data.schema import Annotation, Problem, check_located_annotations


def has_truth(record: Annotation) -> bool:
    return record.answer is not None or record.relevant_windows is not None


def summary(path: Path, records: Sequence[Annotation]) -> str:
    counts = Counter((record.dataset, record.kind) for record in records)
    with_truth = Counter((record.dataset, record.kind) for record in records if has_truth(record))
    lines = [f"{path}: {len(records)} record(s)"]
    for (dataset, kind), count in sorted(counts.items()):
        lines.append(f"  {dataset:10s} {kind:16s} {count:7d}  with ground truth: {with_truth[(dataset, kind)]}")
    return "\n".join(lines)


def video_problems(located: Sequence[tuple[str, Annotation]], args: argparse.Namespace) -> list[Problem]:
    """Check every record against its decoded video (one decode of one frame per video and window)."""
    from lavis_sevila.data.samples import check_windows
    from lavis_sevila.datasets.video_dataset import FrameSource
    from lavis_sevila.video import EmptyWindowError, VideoReadError, read_clip

    source = FrameSource(root=args.videos, pattern=args.pattern, fps=args.fps, backend=args.backend)
    problems = []
    for location, record in located:
        try:
            clip = read_clip(source.path(record), 1, window=record.window, image_size=32, backend=source.backend,
                             fps=source.fps)
            check_windows(record, clip)
        except VideoReadError as error:
            problems.append(Problem(location, "video", str(error)))
        except EmptyWindowError as error:
            field = "relevant_windows" if record.relevant_windows else "start"
            problems.append(Problem(location, field, f"{error} (video {source.path(record)})"))
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_builders.validate", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="annotation jsonl files (schema version 1)")
    parser.add_argument("--videos", type=Path, default=None,
                        help="video root: also check every record against its decoded video")
    parser.add_argument("--pattern", default="{video}.mp4", help='file (or frame folder) of a video id (with --videos)')
    parser.add_argument("--fps", type=float, default=None, help="frame rate of frame folders (with --videos)")
    parser.add_argument("--backend", default="auto", choices=("auto", "decord", "pyav"))
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        try:
            located, problems = check_located_annotations(path)
        except OSError as error:
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            failed = True
            continue
        records = [record for _, record in located]
        if args.videos is not None:
            mismatched = video_problems(located, args)
            problems = problems + mismatched
            if mismatched:
                print(f"{path}: {len(mismatched)} of {len(records)} record(s) do not fit their decoded video",
                      file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
            failed = True
        else:
            print(summary(path, records))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

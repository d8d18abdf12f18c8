"""Check annotation jsonl files against our schema: ``python -m dataset_builders.validate FILE...``.

Prints every problem as ``file:line: field: message`` and exits 1 if there is any;
otherwise prints, per file, how many records of each dataset and kind it holds and how
many have an answer (or relevant windows), so a truncated or test-only file is noticed.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from lavis_sevila.data.schema import Annotation, check_annotations


def has_truth(record: Annotation) -> bool:
    return record.answer is not None or record.relevant_windows is not None


def summary(path: Path, records: Sequence[Annotation]) -> str:
    counts = Counter((record.dataset, record.kind) for record in records)
    with_truth = Counter((record.dataset, record.kind) for record in records if has_truth(record))
    lines = [f"{path}: {len(records)} record(s)"]
    for (dataset, kind), count in sorted(counts.items()):
        lines.append(f"  {dataset:10s} {kind:16s} {count:7d}  with ground truth: {with_truth[(dataset, kind)]}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_builders.validate", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="annotation jsonl files (schema version 1)")
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        try:
            records, problems = check_annotations(path)
        except OSError as error:
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            failed = True
            continue
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

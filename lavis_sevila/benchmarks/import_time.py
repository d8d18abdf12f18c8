"""Import cost of the light entry points, from ``python -X importtime``, in fresh interpreters.

    python -m lavis_sevila.benchmarks.import_time [--repeat 3] [MODULE ...]

For each module: a new interpreter runs ``import MODULE`` under ``-X importtime``; the
cost is the sum of the top-level (cumulative) entries of that report, i.e. everything the
import pulled in, without the interpreter's own start.  Prints the median and every run,
whether LAVIS / torch ended up imported, and the machine it ran on (CPU count, load).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
from typing import Optional, Sequence

DEFAULT_MODULES = (
    "lavis_sevila",
    "dataset_builders.validate",
    "dataset_builders.nextqa",
    "dataset_builders.synthetic",
    "dataset_builders.shards",
    "lavis_sevila.data.schema",
    "lavis_sevila.tasks.metrics.videoqa",
    "lavis_sevila.tasks.metrics.moment_retrieval",
    "lavis_sevila.models.pretrained",
)
ENTRY = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")  # a top-level entry: no indentation
REPORT = "import sys; print(*(m for m in ('lavis', 'torch') if m in sys.modules))"


def import_cost(module: str) -> tuple[float, str]:
    """(seconds, heavy packages imported) of one ``import module`` in a new interpreter."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}; {REPORT}"],
                          capture_output=True, text=True, check=True)
    micros = sum(int(m.group(1)) for line in done.stderr.splitlines() if (m := ENTRY.match(line)))
    return micros / 1e6, done.stdout.strip() or "neither"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(DEFAULT_MODULES))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.node()}: {os.cpu_count()} CPU(s), load {load:.1f}, Python {platform.python_version()}")
    for module in args.modules:
        runs = [import_cost(module) for _ in range(args.repeat)]
        times = ", ".join(f"{seconds:.3f}" for seconds, _ in runs)
        print(f"{module:45s} {statistics.median(s for s, _ in runs):7.3f} s  (runs {times})  imported: {runs[-1][1]}")


if __name__ == "__main__":
    main()

"""An entry point under a launcher, recording what this rank trained and predicted.

Run as ``torchrun ... tests/distributed_probe.py {train|pipeline} PROBE_DIR --cfg-path ...``.
It wraps the runner's training step and the task's gather (which sees this rank's own
records, before they are merged) to note question ids, counts the process groups created
and destroyed, and writes ``PROBE_DIR/probe_rank<r>.json``, with whether the process group
was still alive when the entry point returned.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

from lavis_sevila import cli, pipeline
from lavis_sevila.runners.runner_sevila import SeViLARunner
from lavis_sevila.tasks.base import SevilaTask

TRAINED: list[str] = []
PREDICTED: list[str] = []
GROUPS = {"created": 0, "destroyed": 0}


def _count(original, key):
    def counted(*args, **kwargs):
        GROUPS[key] += 1
        return original(*args, **kwargs)
    return counted


def _record_training(original):
    def forward_backward(self, wrapped, batch, scaler):
        TRAINED.extend(batch.get("question_id", []))
        return original(self, wrapped, batch, scaler)
    return forward_backward


def _record_gather(original):
    def gather(self, records, expected_ids):
        PREDICTED.extend(record["question_id"] for record in records)
        return original(self, records, expected_ids)
    return gather


def main(argv: list[str]) -> None:
    entry, probe_dir, argv = argv[0], Path(argv[1]), argv[2:]
    SeViLARunner.forward_backward = _record_training(SeViLARunner.forward_backward)
    SevilaTask.gather = _record_gather(SevilaTask.gather)
    dist.init_process_group = _count(dist.init_process_group, "created")
    dist.destroy_process_group = _count(dist.destroy_process_group, "destroyed")
    {"train": cli.main, "pipeline": pipeline.main}[entry](argv)
    rank = int(os.environ.get("RANK", 0))
    probe = {"rank": rank, "trained": TRAINED, "predicted": PREDICTED, "group_alive_after_run": dist.is_initialized(),
             **GROUPS}
    probe_dir.mkdir(parents=True, exist_ok=True)
    (probe_dir / f"probe_rank{rank}.json").write_text(json.dumps(probe))


if __name__ == "__main__":
    main(sys.argv[1:])

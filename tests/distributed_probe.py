"""``lavis_sevila.train`` under a launcher, recording what this rank trained and predicted.

Run as ``torchrun ... tests/distributed_probe.py --cfg-path ... --options ...``.  It wraps
the runner's training step and the task's gather (which sees this rank's own records,
before they are merged) to note question ids, then writes ``probe_rank<r>.json`` into
``run.output_dir``, with whether the process group was destroyed when the run returned.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

from lavis_sevila import cli
from lavis_sevila.runners.runner_sevila import SeViLARunner
from lavis_sevila.tasks.base import SevilaTask

TRAINED: list[str] = []
PREDICTED: list[str] = []
OUTPUT: list[str] = []


def _record_training(original):
    def forward_backward(self, wrapped, batch, scaler):
        OUTPUT[:] = [str(self.output_dir)]
        TRAINED.extend(batch.get("question_id", []))
        return original(self, wrapped, batch, scaler)
    return forward_backward


def _record_gather(original):
    def gather(self, records, expected_ids):
        PREDICTED.extend(record["question_id"] for record in records)
        return original(self, records, expected_ids)
    return gather


def main(argv: list[str]) -> None:
    SeViLARunner.forward_backward = _record_training(SeViLARunner.forward_backward)
    SevilaTask.gather = _record_gather(SevilaTask.gather)
    cli.main(argv)
    rank = int(os.environ.get("RANK", 0))
    probe = {"rank": rank, "trained": TRAINED, "predicted": PREDICTED, "group_alive_after_run": dist.is_initialized()}
    Path(OUTPUT[0], f"probe_rank{rank}.json").write_text(json.dumps(probe))


if __name__ == "__main__":
    main(sys.argv[1:])

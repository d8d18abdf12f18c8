"""What SeViLA's two tasks share: collect one record per question, exactly once, and write it.

Evaluation runs on every rank over a non-padded share of the split; records are gathered
to rank 0, de-duplicated by question id (a safety net: our sampler does not pad) and
checked against the split's question ids, so nothing is lost or counted twice.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from lavis.tasks.base_task import BaseTask

from lavis_sevila.runners import distributed
from lavis_sevila.tasks.metrics.videoqa import check_complete, dedupe
from lavis_sevila.utils.progress import track

logger = logging.getLogger(__name__)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


class SevilaTask(BaseTask):
    """Base of ``videoqa`` and ``moment_retrieval``: evaluation loop and bookkeeping."""

    #: fields copied from the batch into every prediction record
    CARRIED = ("question_id", "video_id", "dataset", "question_type", "answer_idx", "num_options", "duration")

    def __init__(self, inference: str, output_dir: str | None = None) -> None:
        super().__init__()
        self.inference = inference
        self.output_dir = Path(output_dir) if output_dir else None

    def predict_batch(self, model, batch: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def compute_metrics(self, records: list[dict[str, Any]], split: str) -> dict[str, Any]:
        raise NotImplementedError

    def valid_step(self, model, samples):  # LAVIS's name for one evaluation batch
        return self.predict_batch(model, samples)

    def evaluation(self, model, data_loader, cuda_enabled: bool = False, device: torch.device | None = None):
        device = device or model.device
        records: list[dict[str, Any]] = []
        show = distributed.launched_world().is_main
        for batch in track(data_loader, "evaluate", enabled=show, samples=lambda b: b.get("num_samples", 0)):
            if batch.get("num_samples", 1) == 0:
                raise RuntimeError(f"evaluation batch lost every sample: {batch.get('skipped')}")
            records.extend(self.predict_batch(model, to_device(batch, device)))
        return records

    def gather(self, records: list[dict[str, Any]], expected_ids: Sequence[str]) -> list[dict[str, Any]] | None:
        """All ranks' records on rank 0 (None elsewhere), once per question, all questions."""
        everything = [r for part in distributed.gather_objects(records) for r in part]
        if not distributed.launched_world().is_main:
            return None
        unique = dedupe(everything)
        check_complete(unique, expected_ids)
        order = {qid: i for i, qid in enumerate(expected_ids)}
        return sorted(unique, key=lambda r: order[r["question_id"]])

    def carried(self, batch: dict[str, Any], row: int) -> dict[str, Any]:
        out = {}
        for key in self.CARRIED:
            if key in batch:
                value = batch[key][row]
                out[key] = value.item() if isinstance(value, torch.Tensor) else value
        return out

    def after_evaluation(self, val_result, split_name, epoch, **kwargs):
        """Metrics of the gathered records; writes predictions and metrics under output_dir."""
        metrics = self.compute_metrics(val_result, split_name)
        if self.output_dir is not None:
            tag = f"{split_name}_epoch{epoch}" if isinstance(epoch, int) else f"{split_name}_{epoch}"
            write_jsonl(self.output_dir / "result" / f"predictions_{tag}.jsonl", (jsonable(r) for r in val_result))
            with open(self.output_dir / "result" / f"metrics_{tag}.json", "w") as handle:
                json.dump(metrics, handle, indent=2)
        return metrics

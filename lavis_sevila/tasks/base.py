"""What SeViLA's two tasks share: collect one record per question, exactly once, and write it.

Evaluation runs on every rank over a non-padded share of the split; records are gathered
to rank 0, de-duplicated by question id (a safety net: our sampler does not pad) and
checked against the split's question ids, so nothing is lost or counted twice.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from lavis.tasks.base_task import BaseTask

from lavis_sevila.diskspace import explain_full_disk
from lavis_sevila.runners import distributed
from lavis_sevila.tasks.metrics.videoqa import check_complete, dedupe
from lavis_sevila.utils.progress import track

logger = logging.getLogger(__name__)


def check_config(cfg) -> None:
    """Check a run's task and dataset sections (keys, names, frame counts) without reading data.

    What ``build_datasets`` checks first, callable for every stage of a pipeline before
    the first one runs, so a mistake in the last stage does not wait for the first to train.
    """
    from lavis import tasks

    tasks.setup_task(cfg).dataset_builders(cfg)


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


def write_text(path: Path, lines: Iterable[str]) -> Path:
    """Write an output file atomically (a full disk leaves no half file and says so)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        with explain_full_disk(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "w") as handle:
                for line in lines:
                    handle.write(line)
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    return write_text(path, (json.dumps(record) + "\n" for record in records))


class SevilaTask(BaseTask):
    """Base of ``videoqa`` and ``moment_retrieval``: evaluation loop and bookkeeping."""

    #: fields copied from the batch into every prediction record
    CARRIED = ("question_id", "video_id", "dataset", "question_type", "answer_idx", "num_options", "duration")

    def __init__(self, inference: str, output_dir: str | None = None) -> None:
        super().__init__()
        self.inference = inference
        self.output_dir = Path(output_dir) if output_dir else None

    def build_datasets(self, cfg) -> dict[str, dict[str, Any]]:
        """LAVIS's loop over ``datasets:``, with every name and key checked before any is built.

        An unknown dataset name lists the registered ones (LAVIS would call ``None``), each
        builder parses its whole section (unknown keys are errors), and the frame counts
        of every stage this run goes through are checked against the model's before a
        single video is read.
        """
        builders = self.dataset_builders(cfg)
        return {name: builder.build_datasets() for name, builder in builders.items()}

    def dataset_builders(self, cfg) -> dict[str, Any]:
        """One checked builder per configured dataset; reads no file (see build_datasets)."""
        from lavis_sevila.datasets.builders import builder_class

        if not cfg.datasets_cfg:
            raise ValueError("no dataset is configured: add a datasets: section")
        builders = {name: builder_class(name)(cfg.datasets_cfg[name]) for name in cfg.datasets_cfg}
        for builder in builders.values():
            self.check_dataset(cfg, builder.settings)
        return builders

    def check_dataset(self, cfg, dataset) -> None:
        """Raise ValueError when a stage of this run would ask for more frames than it samples."""
        from lavis_sevila.models.config import SeViLAConfig
        from lavis_sevila.models.stages import Stage
        from omegaconf import OmegaConf

        model = SeViLAConfig.from_dict(OmegaConf.to_container(cfg.model_cfg, resolve=True))
        run = cfg.run_cfg
        frames, prefix = dataset.build_info.n_frms, f"datasets.{dataset.name}.build_info.n_frms"
        trains = "train" in dataset.build_info.annotations and not run.get("evaluate", False)
        if trains and model.stage is Stage.FINETUNE_ANSWERER and model.num_keyframes > frames.train:
            raise ValueError(
                f"model.num_keyframes is {model.num_keyframes} but {prefix}.train is {frames.train}: the localizer "
                "cannot pick more keyframes than the frames sampled; lower one or raise the other"
            )
        evaluated = set(run.get("valid_splits") or []) | set(run.get("test_splits") or [])
        if self.inference == "chain" and evaluated & set(dataset.build_info.annotations) and model.num_keyframes > frames.eval:
            raise ValueError(
                f"model.num_keyframes is {model.num_keyframes} but {prefix}.eval is {frames.eval}: chain evaluation "
                "cannot pick more keyframes than the frames sampled; lower one or raise the other"
            )

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
        """The batch's fields of one row for its record, and why its video was unreadable."""
        out = {}
        for key in self.CARRIED:
            if key in batch:
                value = batch[key][row]
                out[key] = value.item() if isinstance(value, torch.Tensor) else value
        if batch.get("video_error") and batch["video_error"][row]:
            out["video_error"] = batch["video_error"][row]
        return out

    def after_evaluation(self, val_result, split_name, epoch, **kwargs):
        """Metrics of the gathered records; writes predictions and metrics under output_dir."""
        metrics = self.compute_metrics(val_result, split_name)
        if self.output_dir is not None:
            tag = f"{split_name}_epoch{epoch}" if isinstance(epoch, int) else f"{split_name}_{epoch}"
            write_jsonl(self.output_dir / "result" / f"predictions_{tag}.jsonl", (jsonable(r) for r in val_result))
            write_text(self.output_dir / "result" / f"metrics_{tag}.json", [json.dumps(metrics, indent=2)])
        return metrics

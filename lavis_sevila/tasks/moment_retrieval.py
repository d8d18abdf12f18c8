"""Moment retrieval (QVHighlights): localizer frame predictions -> spans -> official metrics.

A frame is "yes" when its "yes" logit beats its "no" logit at the first decoder step;
consecutive "yes" frames with at most ``run.span_threshold`` (paper: 6) "no" frames
between them form a span, scored by its mean P(yes) (docs/metrics.md).  Frame i covers
the time from the midpoint with its previous sampled frame to the midpoint with its
next one (the first from 0 s, the last to the video's end), so spans are in seconds.
The fork's per-frame yes/no accuracy is reported too.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from lavis.common.registry import registry

from lavis_sevila.tasks.base import SevilaTask, write_jsonl
from lavis_sevila.tasks.metrics.moment_retrieval import evaluate_submission
from lavis_sevila.tasks.metrics.spans import SPAN_THRESHOLD, frames_to_windows, per_frame_accuracy


def frame_bounds(timestamps: np.ndarray, duration: float) -> np.ndarray:
    """n+1 bounds (s) of n time-ordered sampled frames: midpoints, 0 and the video's end."""
    times = np.asarray(timestamps, dtype=float)
    inner = (times[:-1] + times[1:]) / 2
    return np.concatenate([[0.0], inner, [max(duration, times[-1])]])


@registry.register_task("moment_retrieval")
class MomentRetrievalTask(SevilaTask):
    def __init__(self, span_threshold: int = SPAN_THRESHOLD, output_dir: str | None = None) -> None:
        super().__init__("localize", output_dir)
        self.span_threshold = span_threshold

    @classmethod
    def setup_task(cls, cfg=None, **kwargs):
        run = cfg.run_cfg if cfg is not None else {}
        return cls(span_threshold=int(run.get("span_threshold", SPAN_THRESHOLD)), output_dir=run.get("output_dir"))

    def check_dataset(self, cfg, dataset) -> None:
        """Refuse at start what would fail mid-run: the official metrics need a prediction for
        every query, so a query without frames cannot be kept as "unanswered" here."""
        super().check_dataset(cfg, dataset)
        if dataset.build_info.on_unreadable == "unanswered":
            raise ValueError(
                f"datasets.{dataset.name}.build_info.on_unreadable is 'unanswered', but moment retrieval cannot "
                "score a query without a prediction (the official metrics need windows for every query); use "
                "on_unreadable: fail and remove or fix the queries whose videos cannot be read "
                "(python -m dataset_builders.validate --videos ... lists them)"
            )

    def predict_batch(self, model, batch: dict[str, Any]) -> list[dict[str, Any]]:
        records = model.predict(batch, mode="localize")
        out = []
        for row, record in enumerate(records):
            if not record["video_ok"]:
                raise RuntimeError(f"{record['question_id']}: unreadable video in moment retrieval evaluation")
            record = {**self.carried(batch, row), **record}
            duration = float(record["duration"])
            bounds = frame_bounds(batch["timestamps"][row].cpu().numpy(), duration)
            record["pred_relevant_windows"] = frames_to_windows(
                record["yes_logits"], record["no_logits"], bounds, duration, self.span_threshold
            )
            record["frame_labels"] = batch["frame_labels"][row].tolist()
            record["relevant_windows"] = batch["relevant_windows"][row]
            out.append(record)
        return out

    def compute_metrics(self, records: list[dict[str, Any]], split: str) -> dict[str, Any]:
        labelled = [r for r in records if r["relevant_windows"]]
        if labelled and len(labelled) != len(records):
            raise ValueError(f"{split}: {len(records) - len(labelled)} of {len(records)} queries have no relevant "
                             "window; a split is scored only when every query has one")
        metrics: dict[str, Any] = {"split": split, "span_threshold": self.span_threshold, "total": len(records)}
        submission = [
            {"qid": r["question_id"], "vid": r.get("video_id"), "pred_relevant_windows": r["pred_relevant_windows"]}
            for r in records
        ]
        if self.output_dir is not None:
            write_jsonl(self.output_dir / "result" / f"submission_{split}.jsonl", submission)
        if labelled:
            truth = [{"qid": r["question_id"], "relevant_windows": r["relevant_windows"]} for r in labelled]
            keep = {r["question_id"] for r in labelled}
            official = evaluate_submission([s for s in submission if s["qid"] in keep], truth)
            metrics.update(official["brief"])
            metrics["full"] = official.get("full")
            metrics["frame_accuracy"] = per_frame_accuracy(
                np.concatenate([r["yes_logits"] for r in labelled]),
                np.concatenate([r["no_logits"] for r in labelled]),
                np.concatenate([r["frame_labels"] for r in labelled]),
            )
            metrics["agg_metrics"] = metrics["MR-full-mAP"]
        else:  # a test split without windows: the submission file is the result
            metrics["agg_metrics"] = 0.0
        return metrics

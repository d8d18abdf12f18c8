"""Multiple-choice video QA (NExT-QA, STAR, How2QA, TVQA, VLEP, synthetic).

``run.inference`` chooses the paper row: ``chain`` (SeViLA, localizer -> answerer),
``chain_single`` (k = 1), ``uniform`` (BLIP-2 concat: the answerer on all sampled
frames), ``per_frame`` (BLIP-2 voting: majority of single-frame answers; the oracle
accuracy -- right if any single frame answers right -- is reported with it).
"""
from __future__ import annotations

import json
from typing import Any

from lavis.common.registry import registry

from lavis_sevila.tasks.base import SevilaTask, write_text
from lavis_sevila.tasks.metrics.videoqa import accuracy, nextqa_accuracy, nextqa_result_file, star_accuracy

QA_MODES = ("chain", "chain_single", "uniform", "per_frame")


@registry.register_task("videoqa")
class VideoQATask(SevilaTask):
    def __init__(self, inference: str = "chain", output_dir: str | None = None) -> None:
        if inference not in QA_MODES:
            raise ValueError(f"run.inference must be one of {QA_MODES} for videoqa, got {inference!r}")
        super().__init__(inference, output_dir)

    @classmethod
    def setup_task(cls, cfg=None, **kwargs):
        run = cfg.run_cfg if cfg is not None else {}
        return cls(inference=run.get("inference", "chain"), output_dir=run.get("output_dir"))

    def predict_batch(self, model, batch: dict[str, Any]) -> list[dict[str, Any]]:
        num_options = int(batch["num_options"].max()) if "num_options" in batch else None
        records = model.predict(batch, mode=self.inference, num_options=num_options)
        out = []
        for row, record in enumerate(records):
            record = {**self.carried(batch, row), **record}
            record["answer"] = record.pop("answer_idx", -1)
            if "keyframes" in record and "timestamps" in batch:
                times = batch["timestamps"][row]
                record["keyframe_times"] = [round(float(times[i]), 3) for i in record["keyframes"]]
            if record["prediction"] >= record.get("num_options", 5):
                raise RuntimeError(f"{record['question_id']}: prediction outside its options")
            out.append(record)
        return out

    def compute_metrics(self, records: list[dict[str, Any]], split: str) -> dict[str, Any]:
        labelled = sum(r["answer"] >= 0 for r in records)
        if labelled == 0:  # a test split without answers: the predictions file is the result
            return {"split": split, "inference": self.inference, "total": len(records), "answers": 0,
                    "agg_metrics": 0.0}
        if labelled != len(records):
            raise ValueError(f"{split}: {len(records) - labelled} of {len(records)} questions have no answer; "
                             "a split is scored only when every question has one")
        overall = accuracy(records)
        metrics: dict[str, Any] = {"split": split, "inference": self.inference, **overall}
        datasets = {r.get("dataset") for r in records}
        if datasets == {"nextqa"}:
            metrics["nextqa"] = nextqa_accuracy(records)
            if self.output_dir is not None:
                path = self.output_dir / "result" / f"nextqa_results_{split}.json"
                write_text(path, [json.dumps(nextqa_result_file(records))])
        if datasets == {"star"}:
            metrics["star"] = star_accuracy(records)
        if self.inference == "per_frame":
            oracle = sum(bool(r.get("oracle_correct")) for r in records)
            metrics["oracle_accuracy"] = 100.0 * oracle / len(records)
        metrics["agg_metrics"] = metrics["star"]["mean"] if "star" in metrics else overall["accuracy"]
        return metrics

"""Chained stages in one command: each step's checkpoint is a later step's input.

``python -m lavis_sevila.pipeline --cfg-path projects/sevila/<dataset>/pipeline_*.yaml
[--options k=v ...]`` runs the steps of a pipeline file in order, in this process, each
through the same code path as ``lavis_sevila.train`` / ``lavis_sevila.evaluate``::

    pipeline:
      output_dir: output/sevila/nextqa      # step <name> writes to <output_dir>/<name>
      options: []                           # applied to every step (data paths, device)
      steps:
        - name: finetune_answerer
          cfg: projects/sevila/nextqa/finetune_answerer.yaml
          inputs: [pretrain_localizer]        # their checkpoint_final.pth -> model.finetuned
          options: [run.max_epoch=10]
        - name: eval_chain
          cfg: projects/sevila/nextqa/eval.yaml
          evaluate: true
          inputs: [refine_localizer, finetune_answerer]
          pretrained: pretrain_backbone       # its checkpoint_final.pth -> model.pretrained

``inputs`` name earlier steps (or paths to checkpoints, for a starting point made
elsewhere); they are loaded in order, so a later one overrides the groups it also holds.
``pretrained`` names a step (or a file) whose checkpoint is the BLIP-2-layout starting point
(``model.pretrained``: loaded first, then copied into the localizer if
``localizer_init: answerer``): the tiny demo's stage 0.
A step whose ``checkpoint_final.pth`` already exists is skipped with ``--reuse``.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import OmegaConf

from lavis_sevila.cli import check_options, load_config, run, setup_logging
from lavis_sevila.runners import distributed

logger = logging.getLogger(__name__)
FINAL = "checkpoint_final.pth"


@dataclass
class Step:
    name: str
    cfg: str
    evaluate: bool = False
    inputs: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    pretrained: str | None = None


@dataclass
class Pipeline:
    output_dir: str
    steps: list[Step]
    options: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str, extra_options: Sequence[str] = ()) -> "Pipeline":
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        spec = dict(raw.get("pipeline") or {})
        unknown = set(spec) - {"output_dir", "steps", "options"}
        if unknown:
            raise ValueError(f"{path}: unknown pipeline key(s) {sorted(unknown)}; known: output_dir, options, steps")
        steps = []
        for position, step in enumerate(spec.get("steps", [])):
            unknown_step = set(step) - {f for f in Step.__dataclass_fields__}
            if unknown_step:
                raise ValueError(f"{path}: step {position} has unknown key(s) {sorted(unknown_step)}; "
                                 f"known: {sorted(Step.__dataclass_fields__)}")
            steps.append(Step(**step))
            check_options(steps[-1].options)
        check_options(list(spec.get("options", [])) + list(extra_options))
        names = [step.name for step in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: step names must be unique, got {names}")
        for i, step in enumerate(steps):
            for source in step.inputs + ([step.pretrained] if step.pretrained else []):
                if source in names[i:]:
                    raise ValueError(f"{path}: step {step.name!r} reads {source!r}, which runs later (or is itself)")
        return cls(output_dir=spec["output_dir"], steps=steps, options=list(spec.get("options", [])) + list(extra_options))

    def step_dir(self, name: str) -> Path:
        return Path(self.output_dir) / name

    def checkpoint(self, source: str) -> str:
        if any(step.name == source for step in self.steps):
            return str(self.step_dir(source) / FINAL)
        if not Path(source).is_file():
            raise FileNotFoundError(f"pipeline input {source!r} is neither a step name nor a checkpoint file")
        return source

    def step_options(self, step: Step) -> list[str]:
        inputs = [self.checkpoint(source) for source in step.inputs]
        wiring = [f"run.output_dir={self.step_dir(step.name)}"]
        if step.inputs:
            wiring.append("model.finetuned=[" + ",".join(inputs) + "]")
        if step.pretrained:
            wiring.append(f"model.pretrained={self.checkpoint(step.pretrained)}")
        return self.options + step.options + wiring


def run_pipeline(
    pipeline: Pipeline, reuse: bool = False, on_step: Callable[[int, Step], None] | None = None
) -> dict[str, Any]:
    import lavis_sevila  # noqa: F401  (registers tasks and builders)
    from lavis_sevila.tasks.base import check_config

    for step in pipeline.steps:  # every step's config checked before the first one runs
        check_config(load_config(step.cfg, pipeline.step_options(step) + (["run.evaluate=true"] if step.evaluate else [])))
    results: dict[str, Any] = {}
    with distributed.process_group():  # one group for every step (each run() joins it)
        _run_steps(pipeline, reuse, on_step, results)
    if distributed.launched_world().is_main:  # one writer: other ranks may hold no metrics
        summary = Path(pipeline.output_dir) / "pipeline_results.json"
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps(results, indent=2, default=str))
    return results


def _run_steps(pipeline: Pipeline, reuse: bool, on_step: Callable[[int, Step], None] | None,
               results: dict[str, Any]) -> None:
    for index, step in enumerate(pipeline.steps):
        if on_step is not None:
            on_step(index, step)
        done = pipeline.step_dir(step.name) / FINAL
        if reuse and not step.evaluate and done.exists():
            logger.info("step %s: reusing %s", step.name, done)
            continue
        started = time.time()
        logger.info("step %s: %s %s", step.name, "evaluate" if step.evaluate else "train", step.cfg)
        results[step.name] = run(step.cfg, pipeline.step_options(step), evaluate_only=step.evaluate)
        results[step.name]["seconds"] = round(time.time() - started, 1)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Run chained SeViLA stages")
    parser.add_argument("--cfg-path", required=True, help="pipeline file")
    parser.add_argument("--options", nargs="+", default=[], help="key=value applied to every step")
    parser.add_argument("--reuse", action="store_true", help="skip training steps whose checkpoint exists")
    args = parser.parse_args(argv)
    setup_logging()
    return run_pipeline(Pipeline.load(args.cfg_path, args.options), reuse=args.reuse)


if __name__ == "__main__":
    main()

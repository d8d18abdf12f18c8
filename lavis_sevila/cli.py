"""The flow of LAVIS's train.py / evaluate.py, with the plugin loaded and CPU-safe set-up.

``python -m lavis_sevila.train --cfg-path X.yaml [--options k=v ...]`` and
``python -m lavis_sevila.evaluate ...`` both come here; so does the pipeline runner,
which calls :func:`run` once per stage in the same process.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
from datetime import datetime
from typing import Any, Sequence

import numpy as np
import torch


def parse_args(argv: Sequence[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cfg-path", required=True, help="path to the configuration file")
    parser.add_argument(
        "--options",
        nargs="+",
        default=[],
        help="override settings of the config, as key=value pairs (e.g. run.max_epoch=2 model.stage=infer)",
    )
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def setup_logging() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after tokenizing
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_config(cfg_path: str, options: Sequence[str]):
    """LAVIS's Config, with ``--options model.model_type=...`` honoured.

    LAVIS looks the model type up as a flat "model.model_type" key among options it has
    already nested, so an override of the type is ignored when the defaults are picked.
    """
    from lavis.common.config import Config
    from omegaconf import OmegaConf

    class SevilaConfig(Config):
        @staticmethod
        def build_model_config(config, **kwargs):
            chosen = OmegaConf.select(OmegaConf.create(kwargs), "model.model_type")
            if chosen:
                config = OmegaConf.merge(config, {"model": {"model_type": chosen}})
            return Config.build_model_config(config)

        @staticmethod
        def build_dataset_config(config):
            from lavis_sevila.datasets.builders import builder_class

            for name in config.get("datasets") or {}:
                builder_class(name)  # a misspelt name lists the registered ones (LAVIS: AttributeError)
            return Config.build_dataset_config(config)

    return SevilaConfig(argparse.Namespace(cfg_path=cfg_path, options=list(options)))


def check_options(options: Sequence[str]) -> list[str]:
    """``--options`` entries must be ``key=value`` with a dotted key (LAVIS fails on others
    with a bare TypeError or ValueError far from the typo)."""
    for option in options:
        key, sep, _ = str(option).partition("=")
        if not sep or not key.strip() or key != key.strip():
            raise ValueError(f"--options entry {option!r} is not key=value "
                             f"(e.g. model.num_keyframes=4 or run.max_epoch=2)")
    return list(options)


def task_from_settings(cfg, settings):
    """The task, built from the settings already read (LAVIS's ``setup_task(cfg)`` would
    read ``run`` again); LAVIS's own tasks are set up as LAVIS does."""
    from lavis import tasks
    from lavis.common.registry import registry

    from lavis_sevila.tasks.base import SevilaTask

    task_cls = registry.get_task_class(settings.task)
    if task_cls is None:
        known = sorted(registry.mapping.get("task_name_mapping", {}))
        raise ValueError(f"unknown run.task {settings.task!r}; known: {', '.join(known)}")
    if issubclass(task_cls, SevilaTask):
        return task_cls(output_dir=settings.output_dir, **settings.task_options())
    return tasks.setup_task(cfg)


def run(cfg_path: str, options: Sequence[str] = (), evaluate_only: bool = False) -> dict[str, Any]:
    """Build config, task, datasets, model and runner as LAVIS does, then train or evaluate.

    The order follows torchtune's distributed recipes: read and check the run settings,
    join the process group, set up (task, datasets, model, runner), train, and destroy the
    group on the way out (:func:`distributed.process_group`; a pipeline that calls this once
    per stage holds one group around all of them).
    """
    from lavis_sevila.registration import register

    register()  # the model, tasks, datasets, processors and runners, in LAVIS
    from lavis.common.registry import registry

    from lavis_sevila.runners import distributed
    from lavis_sevila.runners.runner_sevila import SeViLARunner, config_dict
    from lavis_sevila.runners.settings import RunSettings

    options = check_options(options) + (["run.evaluate=true"] if evaluate_only else [])
    cfg = load_config(cfg_path, options)
    config = config_dict(cfg)
    settings = RunSettings.from_config(config["run"])
    runner_cls = registry.get_runner_class(settings.runner)
    if runner_cls is None:
        known = sorted(registry.mapping.get("runner_name_mapping", {}))
        raise ValueError(f"unknown run.runner {settings.runner!r}; known: {', '.join(known)}")
    with distributed.process_group():
        # before anything asks for rank/world: datasets split their shards by rank
        distributed.init_distributed(settings.device, need_group=getattr(runner_cls, "needs_process_group", False))
        seed_everything(settings.seed)  # same model initialisation on every rank
        task = task_from_settings(cfg, settings)
        datasets = task.build_datasets(cfg)
        model = task.build_model(cfg)
        job_id = datetime.now().strftime("%Y%m%d%H%M%S")
        ours = {"settings": settings} if issubclass(runner_cls, SeViLARunner) else {}
        runner = runner_cls(cfg=cfg, job_id=job_id, task=task, model=model, datasets=datasets, **ours)
        return runner.evaluate() if evaluate_only else runner.train()


def main(argv: Sequence[str] | None = None, evaluate_only: bool = False) -> dict[str, Any]:
    args = parse_args(argv, "Evaluate SeViLA" if evaluate_only else "Train SeViLA")
    setup_logging()
    return run(args.cfg_path, args.options, evaluate_only=evaluate_only)

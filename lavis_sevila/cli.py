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

    return SevilaConfig(argparse.Namespace(cfg_path=cfg_path, options=list(options)))


def run(cfg_path: str, options: Sequence[str] = (), evaluate_only: bool = False) -> dict[str, Any]:
    """Build config, task, datasets, model and runner as LAVIS does, then train or evaluate."""
    from lavis_sevila.registration import register

    register()  # the model, tasks, datasets, processors and runners, in LAVIS
    from lavis.common.registry import registry
    from lavis import tasks

    options = list(options) + (["run.evaluate=true"] if evaluate_only else [])
    cfg = load_config(cfg_path, options)
    seed = int(cfg.run_cfg.get("seed", 42))
    seed_everything(seed)  # same model initialisation on every rank
    task = tasks.setup_task(cfg)
    datasets = task.build_datasets(cfg)
    model = task.build_model(cfg)
    runner_name = cfg.run_cfg.get("runner", "runner_sevila")
    runner_cls = registry.get_runner_class(runner_name)
    if runner_cls is None:
        raise ValueError(f"unknown run.runner {runner_name!r}")
    job_id = datetime.now().strftime("%Y%m%d%H%M%S")
    runner = runner_cls(cfg=cfg, job_id=job_id, task=task, model=model, datasets=datasets)
    return runner.evaluate() if evaluate_only else runner.train()


def main(argv: Sequence[str] | None = None, evaluate_only: bool = False) -> dict[str, Any]:
    args = parse_args(argv, "Evaluate SeViLA" if evaluate_only else "Train SeViLA")
    setup_logging()
    return run(args.cfg_path, args.options, evaluate_only=evaluate_only)

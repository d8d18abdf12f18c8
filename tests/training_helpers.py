"""Small synthetic data and stage options shared by the training tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "projects" / "sevila" / "synthetic"


def make_data(root: Path, train: int = 16, val: int = 4, test: int = 5) -> Path:
    from dataset_builders.synthetic import SyntheticConfig, generate

    generate(root, SyntheticConfig(train=train, val=val, test=test, frames=16, size=32, window=2))
    return root


def data_options(data: Path, frames: int = 8) -> list[str]:
    key = "datasets.sevila_synthetic.build_info"
    return [
        f"{key}.videos.storage={data / 'videos'}",
        f"{key}.n_frms.train={frames}",
        f"{key}.n_frms.eval={frames}",
    ]


def split_options(data: Path, moment: bool) -> list[str]:
    key = "datasets.sevila_synthetic.build_info.annotations"
    suffix = "_moment" if moment else ""
    return [f"{key}.{split}.storage={data / (split + suffix + '.jsonl')}" for split in ("train", "test")]


def stage_options(data: Path, out: Path, stage_cfg: str, *extra: str) -> list[str]:
    moment = stage_cfg == "pretrain_localizer"
    return [
        *data_options(data),
        *split_options(data, moment),
        f"run.output_dir={out}",
        "run.batch_size_train=4",
        "run.batch_size_eval=3",
        "run.num_workers=0",
        "run.max_epoch=1",
        "model.finetuned=[]",
        "model.num_keyframes=2",
        *extra,
    ]


def run_module(args: list[str], env_extra: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    return out


def python() -> str:
    return sys.executable

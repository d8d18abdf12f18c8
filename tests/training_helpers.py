"""Small synthetic data and stage options shared by the training tests."""
from __future__ import annotations

import os
import socket
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


def free_port() -> int:
    """A port nothing listens on now (for launchers that need one; torchrun takes --standalone)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


TORCHRUN_2 = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def build_shards(data: Path, split: str, out: Path, min_shards: int, frames: int = 8):
    """Shards of one synthetic split, decoded as ``data_options`` samples them."""
    from dataset_builders import shards as builder
    from lavis_sevila.datasets.video_dataset import FrameSource

    options = builder.BuildOptions(n_frms=frames, image_size=32, quality=95)
    source = FrameSource(root=data / "videos", pattern="{video}.mp4")
    return builder.build_shards([data / f"{split}.jsonl"], source, out, options, min_shards=min_shards,
                                workers=1, log=lambda *_: None)

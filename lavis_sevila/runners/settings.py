"""The ``run:`` section of a config, with every default in one place.

LAVIS keeps run options as free-form keys read wherever they are needed; here they are
one dataclass, so a misspelt option fails at start-up instead of being ignored.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class RunSettings:
    task: str
    runner: str = "runner_sevila"
    output_dir: str = "output/sevila"
    device: str = "cpu"  # cpu | cuda
    seed: int = 42
    # optimisation (LAVIS's defaults; spec section 6)
    max_epoch: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs, tests)
    batch_size_train: int = 8
    batch_size_eval: int = 8
    accum_grad_iters: int = 1  # the loss is not divided by it, as in LAVIS
    lr_sched: str = "linear_warmup_cosine_lr"
    init_lr: float = 3e-5
    min_lr: float = 0.0
    warmup_lr: float = 1e-8
    warmup_steps: int = 0
    weight_decay: float = 0.05
    beta2: float = 0.999
    amp: bool = False  # fp16 autocast + GradScaler (CUDA only)
    num_workers: int = 2
    # splits
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    valid_splits: list[str] = field(default_factory=list)
    test_splits: list[str] = field(default_factory=list)
    evaluate: bool = False
    # evaluation
    inference: str = "chain"  # videoqa: chain | chain_single | uniform | per_frame
    span_threshold: int = 6  # moment_retrieval
    # bookkeeping
    save_every_steps: int = 0  # 0 = at the end of each epoch only
    resume_ckpt_path: str | None = None  # a checkpoint_last.pth, or "auto" (output_dir's, if any)
    max_skip_fraction: float = 0.01  # unreadable training samples allowed per epoch
    log_freq: int = 10
    tensorboard: bool = True
    # DeepSpeed (runner_deepspeed): a DeepSpeed config dict merged over our defaults
    deepspeed: dict[str, Any] = field(default_factory=dict)
    # LAVIS keys we accept and ignore (LAVIS's own runner reads them)
    distributed: Any = None
    dist_url: Any = None
    world_size: Any = None
    gpu: Any = None
    rank: Any = None
    dist_backend: Any = None

    @classmethod
    def from_config(cls, run: Mapping[str, Any]) -> "RunSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(run) - known)
        if unknown:
            raise ValueError(f"unknown run option(s): {', '.join('run.' + k for k in unknown)}")
        return cls(**dict(run))

"""The ``run:`` section of a config, with every default in one place.

LAVIS keeps run options as free-form keys read wherever they are needed; here they are
one dataclass, read once by the entry point before anything is built, so a misspelt
option fails at start-up instead of being ignored.  Every field is read by the runner;
the two keys the task reads (LAVIS tasks read their options from ``run``) are checked by
name here and by value in the task's ``setup_task``.
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
    # stop after this many optimizer steps (smoke runs, tests); with accum_grad_iters=k one
    # optimizer step is k batches, so the run trains on max_steps * k batches
    max_steps: int | None = None
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
    # splits: one train split (LAVIS allows several and concatenates them; SeViLA's
    # configs never do); [] for configs that only evaluate
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    valid_splits: list[str] = field(default_factory=list)
    test_splits: list[str] = field(default_factory=list)
    evaluate: bool = False
    # bookkeeping
    save_every_steps: int = 0  # 0 = at the end of each epoch only
    resume_ckpt_path: str | None = None  # a checkpoint_last.pth, or "auto" (output_dir's, if any)
    max_skip_fraction: float = 0.01  # unreadable training samples allowed per epoch
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
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(run) - fields - set(TASK_KEYS))
        if unknown:
            known = ", ".join(sorted(fields | set(TASK_KEYS)))
            raise ValueError(f"unknown run option(s): {', '.join('run.' + k for k in unknown)}; known: {known}")
        if "task" not in run:
            raise ValueError("run.task is not set (videoqa or moment_retrieval)")
        settings = cls(**{k: v for k, v in run.items() if k in fields})
        if len(settings.train_splits) > 1:
            raise ValueError(f"run.train_splits={list(settings.train_splits)}: train on one split")
        if settings.max_steps is not None and settings.max_steps < 1:
            raise ValueError(f"run.max_steps must be >= 1 (optimizer steps), got {settings.max_steps}")
        if settings.accum_grad_iters < 1:
            raise ValueError(f"run.accum_grad_iters must be >= 1, got {settings.accum_grad_iters}")
        return settings

    @property
    def max_batches(self) -> int | None:
        """``max_steps`` in batches (what the training loop counts)."""
        return None if self.max_steps is None else self.max_steps * self.accum_grad_iters

    @property
    def train_split(self) -> str:
        if not self.train_splits:
            raise ValueError("run.train_splits is empty: this config only evaluates "
                             "(use lavis_sevila.evaluate, or set run.train_splits=[train])")
        return self.train_splits[0]


# run keys read by the task, not the runner: videoqa's inference mode
# (chain | chain_single | uniform | per_frame) and moment_retrieval's span threshold
TASK_KEYS = ("inference", "span_threshold")

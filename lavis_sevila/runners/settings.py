"""The ``run:`` section of a config, with every default in one place.

LAVIS keeps run options as free-form keys read wherever they are needed; here they are
one dataclass, read once by the entry point before anything is built, so a misspelt
option fails at start-up instead of being ignored.  The entry point builds the task from
it too (:meth:`RunSettings.task_options`): every field is read, by the runner or the task.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from lavis_sevila.tasks.metrics.spans import SPAN_THRESHOLD


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
    # evaluation, read by the task: videoqa's mode (chain | chain_single | uniform |
    # per_frame) and moment_retrieval's "no" frames allowed inside a span
    inference: str = "chain"
    span_threshold: int = SPAN_THRESHOLD
    # bookkeeping
    save_every_steps: int = 0  # optimizer steps between resumable checkpoints; 0 = end of each epoch only
    resume_ckpt_path: str | None = None  # a checkpoint_last.pth, or "auto" (output_dir's, if any)
    max_skip_fraction: float = 0.01  # unreadable training samples allowed per epoch
    log_freq: int = 10  # off a terminal: one progress line every log_freq batches (and at least once a minute)
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
        unknown = sorted(set(run) - fields)
        if unknown:
            known = ", ".join(sorted(fields))
            raise ValueError(f"unknown run option(s): {', '.join('run.' + k for k in unknown)}; known: {known}")
        if "task" not in run:
            raise ValueError("run.task is not set (videoqa or moment_retrieval)")
        settings = cls(**dict(run))
        for task, keys in TASK_KEYS.items():
            stray = [key for key in keys if key in run and settings.task != task]
            if stray:
                raise ValueError(f"run.{stray[0]} is an option of the {task} task; this config's run.task is "
                                 f"{settings.task!r}: remove it")
        if len(settings.train_splits) > 1:
            raise ValueError(f"run.train_splits={list(settings.train_splits)}: train on one split")
        if settings.max_steps is not None and settings.max_steps < 1:
            raise ValueError(f"run.max_steps must be >= 1 (optimizer steps), got {settings.max_steps}")
        if isinstance(settings.span_threshold, bool) or not isinstance(settings.span_threshold, int) \
                or settings.span_threshold < 0:
            raise ValueError(f"run.span_threshold must be an integer >= 0, got {settings.span_threshold!r}")
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


    def task_options(self) -> dict[str, Any]:
        """The task's own constructor arguments (our tasks; LAVIS's take none)."""
        return {key: getattr(self, key) for key in TASK_KEYS.get(self.task, ())}


# run keys that belong to one task (its constructor's arguments, besides output_dir)
TASK_KEYS = {"videoqa": ("inference",), "moment_retrieval": ("span_threshold",)}

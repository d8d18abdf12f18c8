"""DeepSpeed ZeRO runner: ``run.runner: runner_deepspeed``.

Only the Q-Formers train (a few % of SeViLA's 4.1B parameters), so ZeRO stage 2 --
optimizer states and gradients partitioned across processes, frozen ViT/LLM kept in
bf16 -- is the default; stage 3 (parameters partitioned too) is one option away
(``run.deepspeed.zero_optimization.stage=3``).  Everything else (data order, resume,
evaluation, logs) is ``runner_sevila``'s.

Checkpoints stay in our format: rank 0 writes the trained groups, the manifest, RNG
states and the position in the data; each rank writes its own ZeRO optimizer partition
beside it (``checkpoint_last.zero_rank<r>.iter<i>.pth``, stamped with the iteration the
checkpoint names, so a set is always consistent: see ``save_resumable``).  Those partitions contain a few
DeepSpeed bookkeeping objects (loss scaler, fragment addresses, stage enum); they are
read with ``weights_only=True`` and exactly those classes allow-listed, nothing else.
On CPU set ``DS_ACCELERATOR=cpu`` (the launcher and tests do).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
from pathlib import Path
from typing import Any

import torch
from lavis.common.registry import registry

from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.runners import distributed
from lavis_sevila.runners.runner_sevila import LAST, SeViLARunner

logger = logging.getLogger(__name__)


def default_ds_config(settings, on_gpu: bool) -> dict[str, Any]:
    """Our defaults, matching runner_sevila's optimisation (LAVIS's AdamW, no clipping)."""
    return {
        "train_micro_batch_size_per_gpu": settings.batch_size_train,
        "gradient_accumulation_steps": settings.accum_grad_iters,
        "zero_optimization": {"stage": 2},
        "bf16": {"enabled": on_gpu},
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": settings.init_lr, "betas": [0.9, settings.beta2], "torch_adam": True},
        },
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def deepspeed_safe_globals() -> list[type]:
    """The DeepSpeed classes a ZeRO optimizer state holds: plain bookkeeping records."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@registry.register_runner("runner_deepspeed")
class DeepSpeedRunner(SeViLARunner):
    engine = None
    needs_process_group = True  # a plain `python -m` run has no launcher: a one-process group

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.settings.amp:
            raise ValueError("runner_deepspeed: use run.deepspeed.bf16/fp16 instead of run.amp")
        if self.device.type == "cpu" and os.environ.get("DS_ACCELERATOR") != "cpu":
            raise RuntimeError("runner_deepspeed on CPU needs DS_ACCELERATOR=cpu in the environment")
        self.ds_config = merge(default_ds_config(self.settings, self.device.type == "cuda"), self.settings.deepspeed)

    @property
    def zero_stage(self) -> int:
        return int(self.ds_config.get("zero_optimization", {}).get("stage", 0))

    # -- set-up ------------------------------------------------------------------------
    def prepare_training(self) -> torch.nn.Module:
        import deepspeed

        if self.engine is None:
            groups = [group for group in self.param_groups() if group["params"]]
            self.engine, self._optimizer, _, _ = deepspeed.initialize(
                model=self.model, model_parameters=groups, config=self.ds_config
            )
        return self.engine

    @property
    def optimizer(self):
        if self._optimizer is None:
            self.prepare_training()
        return self._optimizer

    # -- steps ---------------------------------------------------------------------------
    def forward_backward(self, wrapped, batch: dict[str, Any], scaler) -> dict[str, float]:
        out = wrapped(batch)
        wrapped.backward(out["loss"])
        return {k: float(v.detach()) for k, v in out.items()}

    def after_backward(self, step: int, scaler) -> None:
        self.engine.step()  # DeepSpeed counts micro-steps itself (gradient_accumulation_steps)

    # -- weights under ZeRO-3 ------------------------------------------------------------
    def gathered(self, modifier_rank: int | None = None):
        if self.zero_stage < 3 or self.engine is None:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=modifier_rank)

    @torch.no_grad()
    def eval_split(self, split: str, epoch: Any):
        with self.gathered():
            return super().eval_split(split, epoch)

    def save_weights(self, name: str, epoch: int) -> Path:
        with self.gathered():
            return super().save_weights(name, epoch)

    def load_weights(self, path: Path) -> None:
        with self.gathered(modifier_rank=0):
            super().load_weights(path)

    # -- checkpoints ---------------------------------------------------------------------
    def shard_path(self, rank: int, stamp: int) -> Path:
        return self.output_dir / f"{Path(LAST).stem}.zero_rank{rank}.iter{stamp}.pth"

    def save_resumable(self, epoch: int, step: int) -> None:
        """One consistent set: each rank's ZeRO partition, stamped with the iteration, then
        the checkpoint that names that stamp.

        Partitions go to new file names (atomic writes), and only once every rank's is on
        disk does rank 0 replace ``checkpoint_last.pth``; the previous set is removed
        after that.  A kill at any point leaves the old checkpoint with its own partitions,
        or the new one with its own: never new optimizer state beside old weights.
        """
        state = self.resumable_state()
        stamp = self.iteration
        ckpt.atomic_save({"stamp": stamp, "rank": self.dist.rank, "world_size": self.dist.world_size,
                          "optimizer": self.optimizer.state_dict()}, self.shard_path(self.dist.rank, stamp))
        distributed.barrier()  # every partition is written before the checkpoint that names them
        with self.gathered():
            if self.main:
                ckpt.save_checkpoint(
                    self.output_dir / LAST, self.model, self._info(epoch, step), config=self.config,
                    best_metric=self.best_metric, zero_stage=self.zero_stage, zero_stamp=stamp, **state,
                )
        distributed.barrier()
        current = self.shard_path(self.dist.rank, stamp)
        for old in self.output_dir.glob(f"{Path(LAST).stem}.zero_rank{self.dist.rank}.iter*.pth"):
            if old != current:
                old.unlink(missing_ok=True)

    def resume(self, source: str) -> None:
        self.prepare_training()  # ZeRO partitions must exist before their state is loaded
        with self.gathered(modifier_rank=0):
            super().resume(source)

    def load_optimizer_state(self, payload: dict[str, Any]) -> None:
        if payload.get("zero_stage") != self.zero_stage:
            raise ckpt.CheckpointError(f"checkpoint is ZeRO stage {payload.get('zero_stage')}, run is {self.zero_stage}")
        stamp = payload.get("zero_stamp")
        if stamp is None:
            raise ckpt.CheckpointError("checkpoint names no ZeRO partition set (written by an older version); "
                                       "start the run again")
        path = self.shard_path(self.dist.rank, stamp)
        if not path.is_file():
            raise ckpt.CheckpointError(f"{path} is missing: the checkpoint of iteration {stamp} has no ZeRO "
                                       f"optimizer partition for rank {self.dist.rank}")
        try:
            with torch.serialization.safe_globals(deepspeed_safe_globals()):
                shard = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ckpt.CheckpointError(f"{path}: not a weights-only ZeRO partition ({error})") from error
        expected = {"stamp": stamp, "rank": self.dist.rank, "world_size": self.dist.world_size}
        found = {key: shard.get(key) for key in expected} if isinstance(shard, dict) else None
        if found != expected:
            raise ckpt.CheckpointError(f"{path} is {found}, the checkpoint needs {expected}")
        shards: list[Any] = [None] * self.dist.world_size
        shards[self.dist.rank] = shard["optimizer"]
        self.optimizer.load_state_dict(shards, load_optimizer_states=True, load_from_fp32_weights=True)

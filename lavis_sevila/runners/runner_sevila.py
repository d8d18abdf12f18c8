"""LAVIS runner for SeViLA: CPU or GPU, one or many processes, resumable mid-epoch.

Chosen with ``run.runner: runner_sevila``.  What it adds to LAVIS's ``runner_base``:
gloo on CPU, checkpoints in our format (trained groups + optimizer + RNG states, loaded
weights-only), resume from the exact iteration a run was killed at, counted skips of
unreadable training videos, evaluation that sees every question exactly once, and logs
(a progress bar on a terminal, else one line per ``run.log_freq`` steps; TensorBoard
scalars, metrics JSON per epoch, the exact config and package versions).  Optimizer grouping and the learning-rate schedule are LAVIS's.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import torch
from lavis.common.registry import registry
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, IterableDataset

from lavis_sevila.data.samples import SkipCounter
from lavis_sevila.models import checkpoint as ckpt
from lavis_sevila.runners import distributed
from lavis_sevila.runners.sampling import ResumableSampler, SeededSamples
from lavis_sevila.runners.settings import RunSettings
from lavis_sevila.tasks.base import to_device
from lavis_sevila.utils.progress import Progress

logger = logging.getLogger(__name__)

LAST, FINAL, BEST = "checkpoint_last.pth", "checkpoint_final.pth", "checkpoint_best.pth"
VERSIONED = ("lavis-sevila", "salesforce-lavis", "torch", "torchvision", "transformers", "deepspeed", "peft",
             "webdataset", "decord", "av", "numpy")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def config_dict(cfg: Any) -> dict[str, Any]:
    config = cfg.config if hasattr(cfg, "config") else cfg
    return OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config)


@registry.register_runner("runner_sevila")
class SeViLARunner:
    needs_process_group = False  # DeepSpeed needs one even in a single process

    def __init__(self, cfg: Any, task: Any, model: torch.nn.Module, datasets: dict, job_id: str | None = None,
                 settings: RunSettings | None = None) -> None:
        self.config = config_dict(cfg)
        # the entry point reads the settings once and passes them; LAVIS's own train.py does not
        self.settings = settings if settings is not None else RunSettings.from_config(self.config["run"])
        self.dist, self.device = distributed.init_distributed(self.settings.device, self.needs_process_group)
        if self.settings.amp and self.device.type != "cuda":
            raise ValueError("run.amp (fp16 autocast) needs CUDA; set run.amp=false on CPU")
        torch.manual_seed(self.settings.seed + self.dist.rank)
        self.output_dir = Path(self.settings.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.task = task
        self.task.output_dir = self.output_dir
        self.model = model.to(self.device)
        self.splits = self._splits_by_name(datasets)
        wanted = self.settings.valid_splits + self.settings.test_splits
        if not self.settings.evaluate:
            wanted = self.settings.train_splits + wanted
        absent = [split for split in wanted if split not in self.splits]
        if absent:  # found now, not after training
            raise ValueError(f"run uses split(s) {absent} that were not built (their annotations are switched off?); "
                             f"built: {sorted(self.splits)}")
        self.iteration = 0
        self.start = (0, 0)  # (epoch, step in epoch) to continue from
        self.best_metric: float | None = None
        self.epoch_counters: dict[str, Any] | None = None  # this rank's, from a mid-epoch checkpoint
        self._skips = SkipCounter()  # this rank's skips and losses in the current epoch
        self._losses: list[float] = []
        self._optimizer = None
        self._writer = None

    # -- set-up ------------------------------------------------------------------------
    @staticmethod
    def _splits_by_name(datasets: dict) -> dict[str, Any]:
        """{split: dataset} from LAVIS's {dataset name: {split: dataset}}."""
        if len(datasets) != 1:
            raise ValueError(f"runner_sevila runs one dataset per config, got {sorted(datasets)}")
        return dict(next(iter(datasets.values())))

    @property
    def main(self) -> bool:
        return self.dist.is_main

    @property
    def stage(self) -> str:
        return self.model.stage.value

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The trained parameters in optimizer order: SeViLA's under their checkpoint names,
        in the authors' order (``SeViLA.trainable_parameters``), which ZeRO partitions and
        saved optimizer states rely on."""
        listed = getattr(self.model, "trainable_parameters", None)
        if listed is not None:
            return listed()
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def param_groups(self) -> list[dict[str, Any]]:
        """LAVIS's grouping: no weight decay on biases, norms and 1-d parameters.

        The name rule reads the checkpoint (authors') names, the names LAVIS's rule was
        written for (``ln_vision``, ...), whatever our module tree calls them."""
        decay, no_decay = [], []
        for name, param in self.trainable():
            (no_decay if param.ndim < 2 or "bias" in name or "ln" in name or "bn" in name else decay).append(param)
        return [
            {"params": decay, "weight_decay": self.settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            if not self.trainable():
                raise RuntimeError(f"stage {self.stage!r} trains no parameter")
            self._optimizer = torch.optim.AdamW(
                self.param_groups(), lr=self.settings.init_lr, betas=(0.9, self.settings.beta2)
            )
        return self._optimizer

    def lr_scheduler(self):
        cls = registry.get_lr_scheduler_class(self.settings.lr_sched)
        if cls is None:
            raise ValueError(f"unknown run.lr_sched {self.settings.lr_sched!r}")
        return cls(
            optimizer=self.optimizer,
            max_epoch=self.settings.max_epoch,
            min_lr=self.settings.min_lr,
            init_lr=self.settings.init_lr,
            warmup_steps=self.settings.warmup_steps,
            warmup_start_lr=self.settings.warmup_lr,
        )

    def wrap_for_training(self) -> torch.nn.Module:
        if not self.dist.enabled:
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids)

    def loader(self, split: str, training: bool, epoch: int = 0, start: int = 0) -> Iterable[dict[str, Any]]:
        """Batches of one split; in training from batch ``start`` of ``epoch`` on.

        Map-style datasets go through :class:`ResumableSampler`.  Streaming (WebDataset
        shard) datasets split themselves by rank and worker; their order depends only on
        the DataLoader's seeded generator, so resuming skips ``start`` batches (reading them).
        """
        dataset = self.splits[split]
        streaming = isinstance(dataset, IterableDataset)
        batch_size = self.settings.batch_size_train if training else self.settings.batch_size_eval
        sampler = None
        if not streaming:
            if training:
                dataset = SeededSamples(dataset, self.settings.seed)
                dataset.set_epoch(epoch)
            sampler = ResumableSampler(
                len(dataset), shuffle=training, seed=self.settings.seed,
                rank=self.dist.rank, world_size=self.dist.world_size, pad=training,
                groups=None if training else video_groups(dataset),
            )
            sampler.set_epoch(epoch, start * batch_size if training else 0)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.settings.num_workers,
            collate_fn=self.splits[split].collater,
            drop_last=training,
            pin_memory=self.device.type == "cuda",
            # its own generator: creating the iterator must not draw from the global stream
            # (dropout), or a run resumed mid-epoch would diverge from an uninterrupted one
            generator=torch.Generator().manual_seed(self.settings.seed + epoch),
        )
        return itertools.islice(loader, start, None) if streaming else loader

    @property
    def train_split(self) -> str:
        split = self.settings.train_split
        if split not in self.splits:
            raise KeyError(f"run.train_splits names {split!r}, which was not built; built: {sorted(self.splits)}")
        return split

    def steps_per_epoch(self) -> int:
        """Batches per epoch, the same on every rank (the fewest any rank has)."""
        dataset = self.splits[self.train_split]
        share = len(dataset) if isinstance(dataset, IterableDataset) else math.ceil(len(dataset) / self.dist.world_size)
        return int(min(distributed.gather_objects(share // self.settings.batch_size_train)))

    # -- logs --------------------------------------------------------------------------
    def write_run_info(self) -> None:
        if not self.main:
            return
        OmegaConf.save(OmegaConf.create(self.config), self.output_dir / "config.yaml")
        info = {"versions": package_versions(), "world_size": self.dist.world_size, "device": str(self.device)}
        (self.output_dir / "versions.json").write_text(json.dumps(info, indent=2))

    @property
    def writer(self):
        if self._writer is None and self.main and self.settings.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.output_dir / "tensorboard"))
        return self._writer

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        if self.main:
            with open(self.output_dir / "log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")

    # -- checkpoints -----------------------------------------------------------------------
    def _info(self, epoch: int, step: int) -> dict[str, Any]:
        return {"stage": self.stage, "epoch": epoch, "step_in_epoch": step, "iteration": self.iteration,
                "world_size": self.dist.world_size}

    def rng_states(self) -> list[torch.Tensor]:
        return distributed.gather_objects(torch.get_rng_state())

    def resumable_state(self) -> dict[str, Any]:
        """What a resume needs beside the weights, from every rank: RNG states and the
        current epoch's counters (losses, seen, skipped), so the resumed epoch's log row
        and skip limit cover the part before the interruption too."""
        counters = {"losses": list(self._losses), "seen": self._skips.seen, "skipped": self._skips.skipped,
                    "examples": list(self._skips.examples)}
        return {"rng": self.rng_states(), "epoch_counters": distributed.gather_objects(counters)}

    def save_resumable(self, epoch: int, step: int) -> None:
        """Everything needed to continue at (epoch, step): weights, optimizer, RNG, position."""
        state = self.resumable_state()
        if self.main:
            ckpt.save_checkpoint(
                self.output_dir / LAST, self.model, self._info(epoch, step), config=self.config,
                optimizer=self.optimizer.state_dict(), best_metric=self.best_metric, **state,
            )
        distributed.barrier()

    def save_weights(self, name: str, epoch: int) -> Path:
        path = self.output_dir / name
        if self.main:
            ckpt.save_checkpoint(path, self.model, self._info(epoch, 0), config=self.config)
        distributed.barrier()
        return path

    def resume(self, source: str) -> None:
        path = self.output_dir / LAST if source == "auto" else Path(source)
        if not path.exists():
            if source == "auto":
                logger.info("run.resume_ckpt_path=auto: no %s yet, starting fresh", path)
                return
            raise FileNotFoundError(f"resume checkpoint not found: {path}")
        payload = ckpt.read_checkpoint(path)
        info = payload["manifest"]
        if "rng" not in payload:
            raise ckpt.CheckpointError(
                f"{path} holds weights only (a {FINAL} or {BEST}): it cannot be resumed from. Resume from "
                f"{LAST} (run.resume_ckpt_path=auto), or start a new run from these weights with model.finetuned=[{path}]"
            )
        if info.get("stage") != self.stage:
            raise ckpt.CheckpointError(f"{path} is from stage {info.get('stage')!r}, this run is {self.stage!r}")
        if info.get("world_size") != self.dist.world_size:
            raise ckpt.CheckpointError(
                f"{path} was written by {info.get('world_size')} processes; resume with the same number"
            )
        changed = resume_changes(payload.get("config") or {}, self.config)
        if changed:
            raise ckpt.CheckpointError(
                f"{path} was written with other settings that decide the data order or the optimisation: "
                + "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changed)
                + ". Resume with the saved values, or start a new run (another run.output_dir)"
            )
        trained = {ckpt.group_of(ckpt.file_name_of(self.model)(n)) for n, _ in self.trainable()}
        if set(info["groups"]) != trained:
            raise ckpt.CheckpointError(f"{path} holds {info['groups']}, this stage trains {sorted(trained)}")
        ckpt.load_into(self.model, payload["model"], source=str(path))
        self.load_optimizer_state(payload)
        torch.set_rng_state(payload["rng"][self.dist.rank])
        counters = payload.get("epoch_counters")
        self.epoch_counters = None if counters is None else counters[self.dist.rank]
        self.iteration = info["iteration"]
        self.best_metric = payload.get("best_metric")
        self.start = (info["epoch"], info["step_in_epoch"])
        logger.info("resumed from %s at epoch %d, step %d", path, *self.start)

    def load_optimizer_state(self, payload: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(payload["optimizer"])

    # -- training ------------------------------------------------------------------------
    def forward_backward(self, wrapped: torch.nn.Module, batch: dict[str, Any], scaler) -> dict[str, float]:
        with torch.autocast("cuda", dtype=torch.float16, enabled=scaler is not None):
            out = wrapped(batch)
        loss = out["loss"]
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return {k: float(v.detach()) for k, v in out.items()}

    def after_backward(self, step: int, scaler) -> None:
        """Optimizer step every ``accum_grad_iters`` batches (the loss is not divided, as LAVIS)."""
        if (step + 1) % self.settings.accum_grad_iters == 0:
            self.optimizer_step(scaler)

    def optimizer_step(self, scaler) -> None:
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def prepare_training(self) -> torch.nn.Module:
        return self.wrap_for_training()

    def train(self) -> dict[str, Any]:
        started = time.time()
        self.write_run_info()
        results: dict[str, Any] = {}
        if self.settings.evaluate:
            return self.evaluate()
        if self.settings.resume_ckpt_path:
            self.resume(self.settings.resume_ckpt_path)
        wrapped = self.prepare_training()
        scaler = torch.cuda.amp.GradScaler() if self.settings.amp else None
        schedule = self.lr_scheduler()
        per_epoch = self.steps_per_epoch()
        if per_epoch == 0:
            raise ValueError(f"train split smaller than one batch per process ({self.settings.batch_size_train})")
        accum = self.settings.accum_grad_iters
        total = self.settings.max_epoch * per_epoch  # in batches
        if self.settings.max_batches is not None:
            total = min(total, self.settings.max_batches)
        progress = Progress(total, f"train {self.stage}", initial=self.iteration, enabled=self.main,
                            every_steps=self.settings.log_freq)
        skips, losses = self._skips, self._losses
        first_epoch, first_step = self.start
        last_epoch = first_epoch
        for epoch in range(first_epoch, self.settings.max_epoch):
            last_epoch = epoch
            self.model.train()
            start = first_step if epoch == first_epoch else 0
            self.restore_counters(start)
            position = start
            for step, batch in enumerate(self.loader(self.train_split, True, epoch, start), start=start):
                if self.iteration >= total or step >= per_epoch:
                    break
                skips.update(batch)
                schedule.step(cur_epoch=epoch, cur_step=step)
                if batch["num_samples"] == 0:
                    raise RuntimeError(f"a whole training batch was unreadable: {batch['skipped']}")
                stats = self.forward_backward(wrapped, to_device(batch, self.device), scaler)
                self.after_backward(step, scaler)
                self.iteration += 1
                position = step + 1
                losses.append(stats["loss"])
                lr = self.optimizer.param_groups[0]["lr"]
                for key, value in stats.items():
                    self.scalar(f"train/{key}", value, self.iteration)
                self.scalar("train/lr", lr, self.iteration)
                progress.update(1, samples=int(batch["num_samples"]) * self.dist.world_size,
                                loss=stats["loss"], lr=lr, epoch=epoch)
                every = self.settings.save_every_steps
                if every and (step + 1) % accum == 0 and self.iteration % (every * accum) == 0:
                    self.save_resumable(epoch, step + 1)
            summed = SkipCounter()  # over ranks; `skips` stays this rank's (a checkpoint holds those)
            summed.seen, summed.skipped = (int(n) for n in distributed.sum_over_ranks([skips.seen, skips.skipped]))
            summed.examples = list(skips.examples)
            if summed.skipped:
                logger.warning(summed.summary())
            summed.check(self.settings.max_skip_fraction)
            finished_epoch = self.iteration >= (epoch + 1) * per_epoch
            record = {"epoch": epoch, "iteration": self.iteration, "loss": _mean(losses),
                      "skipped": summed.skipped, "seen": summed.seen}
            if not finished_epoch and position % accum == 0:
                self.save_resumable(epoch, position)  # stopped by run.max_steps: resumable from here
            if finished_epoch:
                self.save_resumable(epoch + 1, 0)
                for split in self.settings.valid_splits:
                    metrics = self.eval_split(split, epoch)
                    record[split] = metrics
                    self.keep_best(metrics, epoch)
            self.log_epoch(record)
            if self.iteration >= total:
                break
        progress.close()
        results["train"] = {"iterations": self.iteration, "seconds": round(time.time() - started, 1)}
        if self.settings.valid_splits and (self.output_dir / BEST).exists():
            self.load_weights(self.output_dir / BEST)
        final = self.save_weights(FINAL, last_epoch)
        results["checkpoint"] = str(final)
        results.update(self.evaluate(cur_epoch="final"))
        if self._writer is not None:
            self._writer.close()
        return results

    def restore_counters(self, start: int) -> None:
        """A fresh epoch's counters, or (resumed mid-epoch) those saved with the checkpoint."""
        self._skips.reset()
        self._losses.clear()
        saved, self.epoch_counters = self.epoch_counters, None
        if start == 0:
            return
        if saved is None:
            raise ckpt.CheckpointError("this checkpoint was saved mid-epoch without the epoch's counters "
                                       "(an older format): resume from an end-of-epoch checkpoint")
        self._losses.extend(float(v) for v in saved["losses"])
        self._skips.seen, self._skips.skipped = int(saved["seen"]), int(saved["skipped"])
        self._skips.examples = list(saved["examples"])

    def keep_best(self, metrics: dict[str, Any] | None, epoch: int) -> None:
        value = distributed.gather_objects(None if metrics is None else metrics.get("agg_metrics"))[0]
        if value is not None and (self.best_metric is None or value > self.best_metric):
            self.best_metric = value
            self.save_weights(BEST, epoch)

    def load_weights(self, path: Path) -> None:
        ckpt.load_into(self.model, ckpt.read_checkpoint(path)["model"], source=str(path))

    # -- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def eval_split(self, split: str, epoch: Any) -> dict[str, Any] | None:
        """Metrics on rank 0 (None on other ranks); every question exactly once."""
        if split not in self.splits:
            raise KeyError(f"split {split!r} not built; available: {sorted(self.splits)}")
        self.model.eval()
        records = self.task.evaluation(self.model, self.loader(split, False), device=self.device)
        dataset = self.splits[split]
        expected = [record.qid for record in dataset.annotation]
        gathered = self.task.gather(records, expected)
        metrics = None
        if gathered is not None:
            metrics = self.task.after_evaluation(val_result=gathered, split_name=split, epoch=epoch)
            logger.info("%s (epoch %s): %s", split, epoch, json.dumps(_brief(metrics)))
            for key, value in _brief(metrics).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.scalar(f"{split}/{key}", value, self.iteration)
        distributed.barrier()
        return metrics

    def evaluate(self, cur_epoch: Any = "final", skip_reload: bool = True) -> dict[str, Any]:
        if cur_epoch == "final" and not (self.output_dir / "config.yaml").exists():
            self.write_run_info()
        results = {}
        for split in self.settings.test_splits:
            results[split] = self.eval_split(split, cur_epoch)
        if self.main and results:
            (self.output_dir / "metrics_final.json").write_text(json.dumps(results, indent=2))
        return results


def video_groups(dataset: Any) -> list[str] | None:
    """Each sample's video (evaluation keeps a video's questions together), or None when the
    dataset does not say (then the order is left as it is)."""
    annotation = getattr(dataset, "annotation", None)
    if annotation is None or len(annotation) != len(dataset):
        return None
    videos = [row.get("video") if isinstance(row, dict) else getattr(row, "video", None) for row in annotation]
    return None if any(v is None for v in videos) else videos


# settings a resumed run must share with the run that wrote the checkpoint: they decide
# which samples a saved (epoch, step) stands for and how the optimizer moves
RESUME_FIXED_RUN = ("task", "runner", "seed", "batch_size_train", "accum_grad_iters", "train_splits", "max_epoch",
                    "lr_sched", "init_lr", "min_lr", "warmup_lr", "warmup_steps", "weight_decay", "beta2", "amp",
                    "deepspeed")
RESUME_FIXED_SECTIONS = ("model", "datasets")


def resume_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, saved value, new value) for each setting that differs and must not."""
    old_run, new_run = _run_values(saved.get("run", {})), _run_values(current["run"])
    changes = [(f"run.{key}", old_run[key], new_run[key]) for key in RESUME_FIXED_RUN if old_run[key] != new_run[key]]
    for section in RESUME_FIXED_SECTIONS:
        old_flat, new_flat = _flatten(saved.get(section, {}), section), _flatten(current.get(section, {}), section)
        for key in sorted(set(old_flat) | set(new_flat)):
            if old_flat.get(key) != new_flat.get(key):
                changes.append((key, old_flat.get(key), new_flat.get(key)))
    return changes


def _run_values(run: dict[str, Any]) -> dict[str, Any]:
    """The fixed run settings, defaults filled in (an omitted key equals its default)."""
    fields = {f.name for f in dataclasses.fields(RunSettings)}
    settings = RunSettings(**{"task": None, **{k: v for k, v in run.items() if k in fields}})
    return {key: getattr(settings, key) for key in RESUME_FIXED_RUN}


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}"))
        return out
    return {prefix: value}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}


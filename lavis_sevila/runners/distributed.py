"""torch.distributed set-up that works on CPU (gloo) as well as GPU (nccl).

LAVIS's ``init_distributed_mode`` calls ``torch.cuda.set_device`` and always picks nccl;
this one reads the launcher's environment (torchrun, the deepspeed launcher) and picks the
backend from the device.
"""
from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_world() -> DistInfo:
    """What the launcher says (RANK / WORLD_SIZE / LOCAL_RANK), or one process."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def _device_and_backend(device: str, info: DistInfo) -> tuple[torch.device, str]:
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("run.device is cuda but no CUDA device is visible; set run.device=cpu")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank), "nccl"
    return torch.device("cpu"), "gloo"


_owned = False  # the default group was created here (and is destroyed by process_group())
_depth = 0  # nesting of process_group() blocks; the outermost one destroys


def init_distributed(device: str, need_group: bool = False) -> tuple[DistInfo, torch.device]:
    """Join the process group the launcher started; return this rank's place and device.

    Idempotent: the entry point calls it before any dataset is built (a dataset asks for
    rank/world), the runner again to get its device.  ``need_group`` makes a one-process
    group when no launcher made one (DeepSpeed needs a group; without one it goes looking
    for MPI); that group uses an in-process store, so it takes no port.
    """
    global _owned
    info = launched_world()
    target, backend = _device_and_backend(device, info)
    if is_initialized():
        if dist.get_backend() != backend:
            raise RuntimeError(f"the process group uses {dist.get_backend()}, but run.device={device} needs {backend}: "
                               "every stage of one launch must use the same run.device")
        return info, target
    if info.enabled:
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
        _owned = True
    elif need_group:
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                           ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "0")):
            os.environ.setdefault(key, value)  # DeepSpeed checks that they are set
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
        _owned = True
    return info, target


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """The one owner of the process group's lifetime (init -> set-up -> train -> destroy).

    Entry points wrap a whole run in it; :func:`init_distributed`, called inside, creates
    the group before the data is built, and the outermost block destroys it on the way
    out, on success and on error (a process that exits with a live gloo group can abort
    with SIGABRT, and the launcher then reports a successful job as failed).  Nested
    blocks (the pipeline runs stages through the same entry point) share one group.
    """
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            destroy()


def destroy() -> None:
    """Destroy the group if it was created here (a caller's own group is left alone)."""
    global _owned
    if _owned and is_initialized():
        dist.destroy_process_group()
    _owned = False


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value`` (a list with one entry per rank; just [value] alone)."""
    if not is_initialized():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def sum_over_ranks(values: list[float]) -> list[float]:
    if not is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()

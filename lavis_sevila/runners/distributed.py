"""torch.distributed set-up that works on CPU (gloo) as well as GPU (nccl).

LAVIS's ``init_distributed_mode`` calls ``torch.cuda.set_device`` and always picks nccl;
this one reads the launcher's environment (torchrun, the deepspeed launcher) and picks the
backend from the device.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

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


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group the launcher started (if any); return it and this rank's device."""
    info = launched_world()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("run.device is cuda but no CUDA device is visible; set run.device=cpu")
        torch.cuda.set_device(info.local_rank)
        target = torch.device("cuda", info.local_rank)
        backend = "nccl"
    else:
        target = torch.device("cpu")
        backend = "gloo"
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
    return info, target


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


def ensure_process_group(device: torch.device) -> None:
    """A one-process group when no launcher made one (DeepSpeed needs a group; it would
    otherwise go looking for MPI)."""
    if is_initialized():
        return
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", str(port))):
        os.environ.setdefault(key, value)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)

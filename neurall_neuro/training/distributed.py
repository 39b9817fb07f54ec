"""Distributed data-parallel helpers (``torchrun``: gloo on CPU, NCCL on CUDA).

``neurall train`` run under ``torchrun --nproc_per_node N`` finds ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment and joins a process group;
without them (or with ``WORLD_SIZE=1``) it runs as a single process and every helper
here is a no-op. Only rank 0 writes files and logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from neurall_neuro.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str = "auto") -> DistContext:
    """Join the ``torchrun`` process group if there is one; pick this process's device.

    ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda``. Under DDP on CUDA
    every process uses ``cuda:LOCAL_RANK`` and NCCL; on CPU gloo.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world_size)
    want_cuda = torch.cuda.is_available() if device == "auto" else str(device).startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was requested but no CUDA GPU is available; use --device cpu"
        )
    if want_cuda:
        if world_size > 1:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        else:
            dev = torch.device(device if str(device).startswith("cuda") else "cuda")
            if dev.index is None:
                dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world_size <= 1:
        return DistContext(device=dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        local_world_size=local_world,
        device=dev,
        backend=backend,
    )


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (if this job joined one)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``values`` over all processes (returns a new tensor; identity when single)."""
    if not ctx.distributed:
        return values
    out = values.detach().clone().to(ctx.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(values.device)


def all_reduce_max(value: float, ctx: DistContext) -> float:
    """The maximum of a float over all processes."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


class ShardSampler(Sampler[int]):
    """Deterministic, unpadded sharding for evaluation: rank ``r`` gets ``r, r + W, ...``.

    ``DistributedSampler`` pads the last shard with repeated images so that every rank
    has the same count; summed validation metrics would then count some images twice.
    Here shards may differ by one image and sums over ranks are exact.
    """

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

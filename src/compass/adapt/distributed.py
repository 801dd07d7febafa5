"""Data parallelism for ``compass train`` under ``torchrun`` or ``accelerate launch``.

Every process reads the same data and draws the same global batches (same seed);
each trains on its contiguous slice of a batch, and gradients are averaged in one
all-reduce per optimiser step. The loss is normalised by the target-token count of
the whole global batch, so an update is the one single-process training makes with
the same ``batch_size`` (up to float rounding). Plain ``torch.distributed``: neither
``accelerate`` nor a DDP wrapper is needed, and PEFT's trainable parameters are the
only ones synchronised.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

TIMEOUT_ENV = "COMPASS_DIST_TIMEOUT"  # seconds a collective waits for a stuck or dead rank


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched)."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class World:
    """The processes training one adapter; ``World()`` is a single process, where
    every method leaves the single-process computation bit for bit unchanged."""

    rank: int = 0
    size: int = 1

    @classmethod
    def join(cls) -> World:
        """The default process group's world, first initialising it when a launcher
        started several processes (``WORLD_SIZE`` > 1): NCCL with one GPU per process
        (``LOCAL_RANK``), else gloo. The group then lives until the process exits, as
        torch cannot reliably create a default group again in one process."""
        import torch
        import torch.distributed as dist

        if not dist.is_available():
            return cls()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:  # load_base's .to("cuda") then lands on this process's GPU
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
            dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
            atexit.register(dist.destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else cls()

    @property
    def main(self) -> bool:
        """Whether this process writes files and shows progress."""
        return self.rank == 0

    def shard(self, batch: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of a global batch (length-sorted, so little
        padding); empty for some ranks when the batch has fewer examples than ranks."""
        return np.array_split(batch, self.size)[self.rank]

    def mean(self, nll, n_targets: int):
        """This rank's part of the global batch's mean target NLL, scaled by the
        world size because gradients are averaged (so terms every rank adds alike,
        such as a weight penalty, count once)."""
        if self.size == 1:
            return nll.mean()
        return nll.sum() * (self.size / n_targets)

    def average(self, value: float) -> float:
        """``value`` averaged over ranks (for logging)."""
        if self.size == 1:
            return value
        import torch
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        total = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return float(total) / self.size

    def broadcast(self, params: Sequence) -> None:
        """Start every rank from rank 0's weights, whatever each device's RNG did."""
        if self.size == 1:
            return
        import torch.distributed as dist

        for p in params:
            dist.broadcast(p.data, src=0)

    def average_grads(self, params: Sequence) -> None:
        """Average gradients over ranks in one float32 all-reduce; a rank with no
        examples in the batch contributes zeros."""
        if self.size == 1:
            return
        import torch
        import torch.distributed as dist

        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in params])
        dist.all_reduce(flat)
        flat /= self.size
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p).to(p.dtype)

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

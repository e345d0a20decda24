"""Data parallelism with PyTorch's own stack: `torchrun --nproc_per_node N -m worldsim train ...`.

Each rank samples its own batches (seed + rank); after every backward the gradients are averaged across ranks with
one bucketed all-reduce, which is what DDP does, done explicitly because the rollout stages drive the generator
through `step()` many times per backward (DDP's hooks assume one forward per backward). Identical initial weights
(same seed) + identical averaged gradients = identical weights on every rank, which the tests check.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init(device: torch.device) -> tuple[int, int]:
    """Start the process group when launched by torchrun; returns (rank, world_size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank(), world_size()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_parameters(module: nn.Module) -> None:
    """Make every rank start from rank 0's weights."""
    if dist.is_initialized():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, 0)


def rank0_decides(flag: bool, device: torch.device) -> bool:
    """Rank 0's `flag` on every rank: for decisions each rank would take from its own clock."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([int(flag)], device=device if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(value, 0)
    return bool(value.item())


def average_gradients(module: nn.Module) -> None:
    if not dist.is_initialized():
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def assert_in_sync(module: nn.Module, name: str) -> None:
    """Fail loudly if the ranks' weights have diverged (they must be bit-identical under data parallelism)."""
    if not dist.is_initialized():
        return
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in module.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(world_size())]
    dist.all_gather(gathered, flat)
    if any(not torch.equal(gathered[0], g) for g in gathered[1:]):
        raise RuntimeError(f"{name}: weights differ between ranks; data-parallel training has diverged")
    if is_main():
        print(f"{name}: weights identical on all {world_size()} ranks", flush=True)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

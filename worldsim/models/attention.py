"""Attention kernel choice: flash-attn on CUDA when installed, torch's scaled_dot_product_attention otherwise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # flash-attn is a CUDA-only source build (the [gpu] extra); everything works without it
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_func = None

FLASH_DTYPES = (torch.float16, torch.bfloat16)


def flash_available(device: torch.device) -> bool:
    return flash_attn_func is not None and device.type == "cuda"


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """q (B, H, Nq, d), k/v (B, H, Nk, d), mask (1, Nk) or (Nq, Nk) bool (True = may attend) -> (B, H, Nq, d).

    flash-attn takes no arbitrary mask, so it serves the steady state of play (every cache entry valid), which is
    where the time goes; masked calls (the first frames, training) use torch's kernel.
    """
    if mask is None and q.dtype in FLASH_DTYPES and flash_available(q.device):
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

"""Uniform asymmetric quantization arithmetic (methods.md §1.2), free of any module or observer.

For bit width k the integer range is [0, 2^k - 1]:

    s   = max((M+ - m-) / (2^k - 1), 1e-8),  m- = min(m, 0), M+ = max(M, 0)
    z   = clamp(-round(m- / s), 0, 2^k - 1)
    x_q = clamp(round(x / s) + z, 0, 2^k - 1)        round = round-half-to-even (torch.round)
    x^  = s * (x_q - z)

The range always contains 0 so that zero (padding, ReLU output) is exactly representable. Observers
(``observers.py``) and the fake-quant modules (``quantizer.py`` and the quantizers built on it) share
these functions.
"""

from __future__ import annotations

import torch


def qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    qmax = 2**bits - 1
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    scale = torch.clamp((hi - lo) / qmax, min=1e-8)
    zero_point = torch.clamp(-torch.round(lo / scale), 0, qmax)
    return scale.float(), zero_point.float()


def quantize_codes(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes in [0, 2^bits - 1] (as float tensor, exact for the widths used here)."""
    return torch.clamp(torch.round(x / scale) + zero_point, 0, 2**bits - 1)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounds in the forward pass, passes the gradient straight through."""
    return x + (torch.round(x) - x).detach()


def keep_quantized(quantized: torch.Tensor, fp: torch.Tensor, keep: float) -> torch.Tensor:
    """QDrop's mixing: each element is ``quantized`` with probability ``keep``, else ``fp``."""
    if keep >= 1.0:
        return quantized
    return torch.where(torch.rand_like(quantized) < keep, quantized, fp)


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
        codes = torch.clamp(round_ste(x / scale) + zero_point, 0, 2**bits - 1)
        return (codes - zero_point) * scale
    # Same arithmetic in place: activations of the early encoder stages are 16M elements per image,
    # and the fresh allocations of the out-of-place form dominate fake-quant evaluation time.
    return torch.round(x / scale).add_(zero_point).clamp_(0, 2**bits - 1).sub_(zero_point).mul_(scale)

"""AGQ: adaptive-granularity log quantizer for post-softmax attention maps (PTQ4SAM, methods.md §2.2).

For k bits and base 2^(1/tau), tau in {1, 2, 4}:

    code  = clamp(round(-tau * log2(a / s)), 0, 2^k - 2)
    a^    = s * 2^(-code / tau)

Underflow rule: the all-ones code 2^k - 1 is reserved for an exact zero. A probability whose unclamped
code is 2^k - 1 or more (a < s * 2^(-(2^k - 1.5)/tau)), or that is 0 itself, becomes 0. The reference
code maps underflow to 0 too, but keeps all 2^k codes as levels as well, which needs k + 1 bits; here
every state fits in k bits, so hardware decodes exactly what fake quantization computes. Mapping tiny
probabilities to 0 rather than to the smallest level matters for token-to-image attention over 4096
keys, where clamping would add thousands of spurious small weights.

tau and s are chosen per attention module by the error of the attention *output*, mean |(A^ - A) V|^p,
summed over calibration calls (paper Eq. 14 uses p = 2; each call scores a strided subset of at most
AGQ_SAMPLES probabilities); s is searched per call on a log grid below
the observed maximum and averaged over calls for the chosen tau.

In reconstruction s is learnable: the codes are held fixed in the backward pass, so s gets the gradient
of s * 2^(-code/tau), and the probabilities get the straight-through gradient.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .quantizer import UniformQuantizer
from .uniform import keep_quantized

TAUS = (1, 2, 4)
# Calibration scores the candidates on at most this many attention probabilities per call, taken as
# whole (window, head) maps at an even stride: TinyViT's first stage has millions per image, and scoring
# 72 candidates on all of them made AGQ the slowest part of calibration by far.
AGQ_SAMPLES = 1 << 18


def _subsample(a: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps, values = a.reshape(-1, *a.shape[-2:]), value.reshape(-1, *value.shape[-2:])
    step = -(-maps.shape[0] // max(1, AGQ_SAMPLES // maps[0].numel()))
    return maps[::step], values[::step]


def agq_codes(a: torch.Tensor, scale: float | torch.Tensor, tau: int, bits: int) -> torch.Tensor:
    """Integer codes in [0, 2^bits - 1]; 2^bits - 1 encodes zero (see the module docstring)."""
    zero_code = 2**bits - 1
    raw = torch.round(-tau * torch.log2(torch.clamp(a, min=1e-30) / scale))
    codes = torch.clamp(raw, min=0.0)
    return torch.where((raw >= zero_code) | (a <= 0), torch.full_like(codes, zero_code), codes)


def agq_values(codes: torch.Tensor, scale: float | torch.Tensor, tau: int, bits: int) -> torch.Tensor:
    values = scale * torch.exp2(-codes / tau)
    return torch.where(codes == 2**bits - 1, torch.zeros_like(values), values)


def agq_fake_quantize(a: torch.Tensor, scale, tau: int, bits: int) -> torch.Tensor:
    return agq_values(agq_codes(a, scale, tau, bits), scale, tau, bits)


class AGQQuantizer(nn.Module):
    """Drop-in post-softmax quantizer: ``forward(attn, value=None)``.

    While ``observing``, each call scores every (tau, s) candidate by the attention-output error with
    the given ``value`` tensor; :meth:`finalize` keeps the tau with the smallest summed error and the
    mean of its per-call best s.
    """

    def __init__(self, bits: int, taus: tuple[int, ...] = TAUS, grid: int = 24, p: float = 2.0):
        super().__init__()
        self.bits, self.taus, self.grid, self.p = bits, tuple(taus), grid, p
        self.observing = False
        self.enabled = False
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("tau", torch.tensor(1))
        self.register_buffer("calibrated", torch.tensor(False))
        self.loss_sum = {t: 0.0 for t in self.taus}
        self.scale_sum = {t: 0.0 for t in self.taus}
        self.calls = 0
        self.drop_prob = 1.0  # probability of quantizing an element; < 1 only inside reconstruction
        self.register_parameter("learned_scale", None)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, taus={self.taus}"

    def candidate_scales(self, a_max: float) -> torch.Tensor:
        low = max(min(0.1, 0.01 * a_max), 1e-6)
        return torch.logspace(torch.log10(torch.tensor(low)), torch.log10(torch.tensor(a_max)), self.grid)

    def output_error(self, a: torch.Tensor, a_hat: torch.Tensor, value: torch.Tensor) -> float:
        return ((a_hat - a) @ value).abs().pow(self.p).mean().item()

    def observe(self, a: torch.Tensor, value: torch.Tensor) -> None:
        """Score all candidates on one call and add each tau's best (error, s) to the running sums."""
        a, value = _subsample(a.detach().float(), value.detach().float())
        for tau in self.taus:
            err, s = min((self.output_error(a, agq_fake_quantize(a, s.item(), tau, self.bits), value), s.item())
                         for s in self.candidate_scales(a.max().item()))
            self.loss_sum[tau] += err
            self.scale_sum[tau] += s
        self.calls += 1

    def finalize(self) -> None:
        if self.calls == 0:
            raise RuntimeError("AGQQuantizer saw no data; was calibration run?")
        tau = min(self.taus, key=lambda t: self.loss_sum[t])
        self.tau.fill_(tau)
        self.scale.fill_(self.scale_sum[tau] / self.calls)
        self.calibrated.fill_(True)

    current_scale = UniformQuantizer.current_scale
    start_scale_learning = UniformQuantizer.start_scale_learning
    stop_scale_learning = UniformQuantizer.stop_scale_learning

    def codes(self, a: torch.Tensor) -> torch.Tensor:
        return agq_codes(a, self.scale, int(self.tau), self.bits)

    def forward(self, a: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        if self.observing:
            if value is None:
                raise RuntimeError("AGQ calibration needs the attention's value tensor")
            self.observe(a, value)
        if not self.enabled:
            return a
        if not bool(self.calibrated):
            raise RuntimeError("quantizer enabled before calibration")
        scale, tau = self.current_scale(), int(self.tau)
        if torch.is_grad_enabled() and (a.requires_grad or scale.requires_grad):
            codes = agq_codes(a.detach(), scale.detach(), tau, self.bits)
            out = agq_values(codes, scale, tau, self.bits) + (a - a.detach())
        else:
            out = agq_fake_quantize(a, scale, tau, self.bits)
        return keep_quantized(out, a, self.drop_prob)

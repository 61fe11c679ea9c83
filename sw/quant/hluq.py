"""HLUQ: hybrid log/uniform quantization of post-GELU / post-ReLU activations (AHCPTQ, methods.md §3.1).

With [m, M] the calibration range, R = M - m, x' = x - m >= 0, L = 2^k codes, L_log = g * L:

    s_log = r * R                                   breakpoint between the two regions
    s_uni = R * (1 - r) / ((2^k - 1) * (1 - g))     uniform step above it

Levels (shifted units): 0; the log levels s_log * 2^-j, j = L_log - 1 ... 0; and the uniform levels
s_log + u * s_uni, u = 1 ... L_uni - 1. The reference also keeps u = 0, which equals the log level
s_log; dropping that duplicate leaves exactly 2^k distinct levels, so every code fits in k bits.

Code layout (monotone in the value; written into the export bundle):

    code 0                  zero: x^ = m (log-region underflow, and anything below m)
    code 1 .. L_log         log:  x^ = m + s_log * 2^-(L_log - code)     (shift by L_log - code)
    code L_log+1 .. 2^k-1   uniform: x^ = m + s_log + (code - L_log) * s_uni

Encoding: x' <= s_log -> c = round(-log2(x' / s_log)); c >= L_log underflows to code 0, else code
L_log - c. x' > s_log -> u = clamp(round((x' - s_log) / s_uni), 0, L_uni - 1), code L_log + u. The
underflow test looks at log-region values only: the reference kernel tests every element, so large
uniform-region values (x' >= L_log in absolute units) collapsed to the breakpoint.

(r, g) is chosen among RANGE_RATES x GRID_RATES by the output error of the consuming linear layer with
its float weights, each candidate scored on every calibration call with the running-average range as of
that call, the mean loss deciding; the scales are then recomputed from the final range. In
reconstruction s_log and s_uni are learnable (codes held fixed in the backward pass, inputs passed
straight through); m stays fixed.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from .uniform import keep_quantized

GRID_RATES = (0.125, 0.25, 0.5)
RANGE_RATES = (0.1, 0.3, 0.5)
# Rows of the consumer's input scored per calibration call: the candidate search runs 9 linear layers,
# and TinyViT's first stage feeds 16k tokens x 512 channels per image into its fc2.
SEARCH_ROWS = 4096


def log_codes(bits: int, grid_rate: float) -> int:
    return int(round(grid_rate * 2**bits))


def hluq_scales(lo: float | torch.Tensor, hi: float | torch.Tensor, bits: int, range_rate: float,
                grid_rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    span = torch.as_tensor(hi - lo, dtype=torch.float32).clamp(min=1e-8)
    return span * range_rate, span * (1 - range_rate) / ((2**bits - 1) * (1 - grid_rate))


def hluq_codes(x: torch.Tensor, m, s_log, s_uni, bits: int, l_log: int) -> torch.Tensor:
    shifted = x - m
    c = torch.round(-torch.log2(torch.clamp(shifted, min=1e-20) / s_log))
    log_code = torch.where(c >= l_log, torch.zeros_like(c), l_log - torch.clamp(c, min=0))
    u = torch.clamp(torch.round((shifted - s_log) / s_uni), 0, 2**bits - l_log - 1)
    return torch.where(shifted <= s_log, log_code, l_log + u)


def hluq_values(codes: torch.Tensor, m, s_log, s_uni, bits: int, l_log: int) -> torch.Tensor:
    log_value = s_log * torch.exp2(codes - l_log)
    uni_value = s_log + (codes - l_log) * s_uni
    shifted = torch.where(codes <= l_log, log_value, uni_value)
    return torch.where(codes == 0, torch.zeros_like(shifted), shifted) + m


def hluq_fake_quantize(x: torch.Tensor, m, s_log, s_uni, bits: int, l_log: int) -> torch.Tensor:
    """``hluq_values(hluq_codes(x))`` with the same float operations on each element, fused and in
    place: the codes' round trip costs twice the memory passes, and HLUQ's inputs (TinyViT's MLP
    hidden activations, 8M elements per image) made it the largest part of calibration statistics."""
    if torch.is_grad_enabled() and (x.requires_grad or torch.as_tensor(s_log).requires_grad):
        return hluq_values(hluq_codes(x, m, s_log, s_uni, bits, l_log), m, s_log, s_uni, bits, l_log)
    shifted = x - m
    c = torch.clamp(shifted, min=1e-20).div_(s_log).log2_().neg_().round_()
    underflow = c >= l_log
    # l_log - code is the clamped c exactly (small integers), so exp2 sees the same argument.
    log_value = c.clamp_(min=0).neg_().exp2_().mul_(s_log).masked_fill_(underflow, 0.0)
    uni_value = (shifted - s_log).div_(s_uni).round_().clamp_(0, 2**bits - l_log - 1).mul_(s_uni).add_(s_log)
    return torch.where(shifted <= s_log, log_value, uni_value).add_(m)


class HLUQQuantizer(nn.Module):
    """Per-tensor HLUQ input quantizer of a linear layer; ``consumer`` is that layer (float weights)."""

    def __init__(self, bits: int, consumer: nn.Linear):
        super().__init__()
        self.bits = bits
        self.consumer = [consumer]  # a list so the layer is not registered (and saved) twice
        self.observing = False
        self.enabled = False
        self.drop_prob = 1.0
        self.register_buffer("lo", torch.tensor(0.0))
        self.register_buffer("s_log", torch.tensor(1.0))
        self.register_buffer("s_uni", torch.tensor(1.0))
        self.register_buffer("l_log", torch.tensor(1))
        self.register_buffer("calibrated", torch.tensor(False))
        self.register_parameter("learned_s_log", None)
        self.register_parameter("learned_s_uni", None)
        self.candidates = list(itertools.product(RANGE_RATES, GRID_RATES))
        self.loss_sum = [0.0] * len(self.candidates)
        self.range_sum = [0.0, 0.0]
        self.calls = 0

    def extra_repr(self) -> str:
        return f"bits={self.bits}, hybrid log/uniform"

    @property
    def log_levels(self) -> int:
        return int(self.l_log)

    def observe(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        self.range_sum[0] += x.min().item()
        self.range_sum[1] += x.max().item()
        self.calls += 1
        lo, hi = self.range_sum[0] / self.calls, self.range_sum[1] / self.calls
        rows = x.reshape(-1, x.shape[-1])
        rows = rows[:: -(-rows.shape[0] // SEARCH_ROWS)]
        layer = self.consumer[0]
        target = F.linear(rows, layer.weight, layer.bias)
        for i, (r, g) in enumerate(self.candidates):
            s_log, s_uni = hluq_scales(lo, hi, self.bits, r, g)
            x_hat = hluq_fake_quantize(rows, lo, s_log, s_uni, self.bits, log_codes(self.bits, g))
            self.loss_sum[i] += (F.linear(x_hat, layer.weight, layer.bias) - target).pow(2).mean().item()

    def finalize(self) -> None:
        if self.calls == 0:
            raise RuntimeError("HLUQQuantizer saw no data; was calibration run?")
        best = min(range(len(self.candidates)), key=lambda i: self.loss_sum[i])
        r, g = self.candidates[best]
        lo, hi = self.range_sum[0] / self.calls, self.range_sum[1] / self.calls
        s_log, s_uni = hluq_scales(lo, hi, self.bits, r, g)
        self.lo.fill_(lo)
        self.s_log.fill_(float(s_log))
        self.s_uni.fill_(float(s_uni))
        self.l_log.fill_(log_codes(self.bits, g))
        self.calibrated.fill_(True)

    def current_scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        s_log = self.s_log if self.learned_s_log is None else self.learned_s_log
        s_uni = self.s_uni if self.learned_s_uni is None else self.learned_s_uni
        return s_log, s_uni

    def start_scale_learning(self) -> list[nn.Parameter]:
        self.learned_s_log = nn.Parameter(self.s_log.detach().clone())
        self.learned_s_uni = nn.Parameter(self.s_uni.detach().clone())
        return [self.learned_s_log, self.learned_s_uni]

    def stop_scale_learning(self) -> None:
        if self.learned_s_log is not None:
            self.s_log = self.learned_s_log.detach().clamp(min=1e-8).clone()
            self.s_uni = self.learned_s_uni.detach().clamp(min=1e-8).clone()
            self.learned_s_log = self.learned_s_uni = None

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        return hluq_codes(x, self.lo, self.s_log, self.s_uni, self.bits, self.log_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.observe(x)
        if not self.enabled:
            return x
        if not bool(self.calibrated):
            raise RuntimeError("quantizer enabled before calibration")
        s_log, s_uni = self.current_scales()
        if torch.is_grad_enabled() and (x.requires_grad or s_log.requires_grad):
            codes = hluq_codes(x.detach(), self.lo, s_log.detach(), s_uni.detach(), self.bits, self.log_levels)
            out = hluq_values(codes, self.lo, s_log, s_uni, self.bits, self.log_levels) + (x - x.detach())
        else:
            out = hluq_fake_quantize(x, self.lo, s_log, s_uni, self.bits, self.log_levels)
        return keep_quantized(out, x, self.drop_prob)

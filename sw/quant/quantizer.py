"""The uniform fake-quant module (arithmetic in ``uniform.py``, methods.md §1.2).

Block reconstruction (``sw/quant/recon``) adds three things, all inactive outside it: a learnable
activation scale (LSQ, rounding passed straight through), QDrop's random per-element dropping of
quantization (``drop_prob`` < 1), and AdaRound's learned weight rounding, which ends as a fixed
``round_up`` bit per weight: codes = clamp(floor(w / s) + round_up + z, 0, 2^k - 1).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .observers import Observer
from .uniform import fake_quantize, keep_quantized, qparams_from_range, quantize_codes


class UniformQuantizer(nn.Module):
    """Fake-quantizes a tensor per tensor (``ch_axis=None``) or per channel along ``ch_axis``.

    Two switches drive it: ``observing`` feeds every input to the observer, ``enabled`` replaces the
    input by its quantized value. With both off it is the identity, which is how the float model is
    recovered exactly.
    """

    def __init__(self, bits: int, observer: Observer, ch_axis: int | None = None):
        super().__init__()
        self.bits = bits
        self.ch_axis = ch_axis
        self.observer = observer
        self.observing = False
        self.enabled = False
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.register_buffer("calibrated", torch.tensor(False))
        # Reconstruction state; see the module docstring. drop_prob is the probability that an
        # element is quantized, so 1.0 (quantize everything) is the only inference setting.
        self.drop_prob = 1.0
        self.register_parameter("learned_scale", None)
        self.register_buffer("round_up", None)
        self.soft_rounding = None

    def extra_repr(self) -> str:
        granularity = "per-tensor" if self.ch_axis is None else f"per-channel(axis={self.ch_axis})"
        return f"bits={self.bits}, {granularity}, observer={type(self.observer).__name__}"

    def _shaped(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.ch_axis is None or t.dim() == 0:
            return t
        shape = [1] * x.dim()
        shape[self.ch_axis] = -1
        return t.reshape(shape)

    def finalize(self) -> None:
        """Turn the observed range into scale and zero point."""
        lo, hi = self.observer.range()
        scale, zero_point = qparams_from_range(lo, hi, self.bits)
        self.scale = scale.to(self.scale.device)
        self.zero_point = zero_point.to(self.zero_point.device)
        self.calibrated.fill_(True)

    def current_scale(self) -> torch.Tensor:
        return self.scale if self.learned_scale is None else self.learned_scale

    def start_scale_learning(self) -> list[nn.Parameter]:
        self.learned_scale = nn.Parameter(self.scale.detach().clone())
        return [self.learned_scale]

    def stop_scale_learning(self) -> None:
        if self.learned_scale is not None:
            self.scale = self.learned_scale.detach().clamp(min=1e-8).clone()
            self.learned_scale = None

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero_point = self._shaped(self.scale, x), self._shaped(self.zero_point, x)
        if self.round_up is not None:
            return torch.clamp(torch.floor(x / scale) + self.round_up.to(x.dtype) + zero_point, 0, 2**self.bits - 1)
        return quantize_codes(x, scale, zero_point, self.bits)

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero_point = self._shaped(self.current_scale(), x), self._shaped(self.zero_point, x)
        if self.soft_rounding is not None:
            codes = torch.clamp(torch.floor(x / scale) + self.soft_rounding() + zero_point, 0, 2**self.bits - 1)
            return (codes - zero_point) * scale
        if self.round_up is not None:
            return (self.codes(x) - zero_point) * scale
        return fake_quantize(x, scale, zero_point, self.bits)

    def forward(self, x: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        # ``value`` is the attention's V, passed to every post-softmax quantizer; only AGQ uses it.
        if self.observing:
            self.observer.observe(x.detach())
        if not self.enabled:
            return x
        if not bool(self.calibrated):
            raise RuntimeError("quantizer enabled before calibration")
        return keep_quantized(self._quantize(x), x, self.drop_prob)

"""How much each CAG input quantizer clips and how large its error is, on a calibrated model's own inputs.

Comparing group counts by end accuracy alone does not say whether fewer groups lose through clipping
(a merged group takes the mean of its channels' scales, so wide channels fall outside it) or through
resolution. This measures both per quantizer, next to a per-tensor min/max quantizer fitted to the same
input (an oracle: it sees the very tensor it quantizes), which is what a single group would be if its
range were the union of its channels' ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cag import CAGQuantizer
from .prepare import iter_quantizers
from .quantizer import fake_quantize, qparams_from_range


@dataclass
class CagError:
    """Sums over every element a CAG quantizer saw."""

    name: str
    elements: int = 0
    clipped: int = 0
    sq_error: float = 0.0
    sq_error_minmax: float = 0.0
    sq_signal: float = 0.0

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / max(self.elements, 1)

    @property
    def rel_mse(self) -> float:
        return self.sq_error / max(self.sq_signal, 1e-30)

    @property
    def rel_mse_minmax(self) -> float:
        return self.sq_error_minmax / max(self.sq_signal, 1e-30)


@dataclass
class CagErrorProbe:
    """Forward hooks on every CAG quantizer of ``qmodel``; use as a context manager around forwards."""

    qmodel: torch.nn.Module
    stats: dict[str, CagError] = field(default_factory=dict)

    def __enter__(self) -> "CagErrorProbe":
        self._handles = []
        for name, q in iter_quantizers(self.qmodel):
            if isinstance(q, CAGQuantizer):
                self.stats[name] = CagError(name)
                self._handles.append(q.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, name: str):
        def record(q: CAGQuantizer, inputs, output) -> None:
            x = inputs[0].detach().double()
            scale, zero_point = (t.double() for t in q.channel_params())
            top = 2**q.bits - 1
            # A value clips when its unclamped code lies outside [0, top].
            raw = torch.round(x / scale) + zero_point
            s_mm, z_mm = qparams_from_range(x.min().reshape(1), x.max().reshape(1), q.bits)
            minmax = fake_quantize(x, s_mm.double(), z_mm.double(), q.bits)
            entry = self.stats[name]
            entry.elements += x.numel()
            entry.clipped += int(((raw < 0) | (raw > top)).sum())
            entry.sq_error += float((output.detach().double() - x).pow(2).sum())
            entry.sq_error_minmax += float((minmax - x).pow(2).sum())
            entry.sq_signal += float(x.pow(2).sum())
        return record

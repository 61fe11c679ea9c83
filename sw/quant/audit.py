"""Checks that a quantized model quantizes every element at inference (methods.md §1.6).

The published PTQ4SAM code left QDrop's 50 % dropping on at test time for every linear/conv input, so
half of the GEMM inputs stayed float and the reported accuracy was inflated. Here every quantizer's
output is compared, on a real forward, with its input fully quantized; any difference (a dropped
element, a learnable scale still attached, a disabled quantizer) names the quantizer.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .agq import AGQQuantizer, agq_fake_quantize
from .cag import CAGQuantizer
from .hluq import HLUQQuantizer, hluq_fake_quantize
from .prepare import iter_quantizers


def fully_quantized(q: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``q`` must output for ``x`` when it quantizes every element with its stored parameters."""
    if isinstance(q, AGQQuantizer):
        return agq_fake_quantize(x, q.scale, int(q.tau), q.bits)
    if isinstance(q, CAGQuantizer):
        return (q.codes(x) - q.zero_point[q.labels]) * q.scale[q.labels]
    if isinstance(q, HLUQQuantizer):
        return hluq_fake_quantize(x, q.lo, q.s_log, q.s_uni, q.bits, q.log_levels)
    return (q.codes(x) - q._shaped(q.zero_point, x)) * q._shaped(q.scale, x)


@torch.no_grad()
def leaking_quantizers(qmodel: nn.Module, forward: Callable[[], object]) -> list[str]:
    """Names of the quantizers whose output during ``forward()`` is not their fully quantized input."""
    leaks: dict[str, None] = {}
    handles = []
    for name, q in iter_quantizers(qmodel):
        def check(module, args, output, name=name):
            if not torch.equal(output, fully_quantized(module, args[0])):
                leaks[name] = None
        handles.append(q.register_forward_hook(check))
    try:
        forward()
    finally:
        for h in handles:
            h.remove()
    return list(leaks)

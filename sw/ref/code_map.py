"""An elementwise host step between two integer layers, as a function from one layer's output code to
the next layer's input code.

Where the host reads a layer's signed host code h only through an elementwise step (the MLPs' GELU and
ReLU) into layer ``into``, ``into``'s input code is encode(step(h * scale)) element by element: a
function of h alone whenever ``into``'s input format is per-tensor (uniform, HLUQ), since every element
goes through the same arithmetic (``steps.elementwise_codes``). Over the host code range
that function is a base code plus +-1 steps at thresholds, which is what an output lookup on the
accelerator computes (``hw.core.isa.LookupStep``); a CAG input (per channel group) has no per-tensor
function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bundle import CagCodes, GemmLayer, HostOutput
from .steps import elementwise_codes


@dataclass(frozen=True)
class CodeMap:
    """``into``'s input code of each host code ``first``, ``first`` + 1, ..."""

    first: int
    codes: np.ndarray

    def __call__(self, host_codes: np.ndarray) -> np.ndarray:
        return self.codes[np.asarray(host_codes, np.int64) - self.first]

    def steps(self) -> tuple[int, tuple[tuple[int, int], ...]]:
        """(base, steps): the code of ``first``, then (threshold, down) for each +-1 change, in order; a
        change by d is |d| steps at one threshold."""
        change = np.diff(self.codes)
        out = []
        for i in np.nonzero(change)[0]:
            out += [(self.first + int(i) + 1, int(change[i] < 0))] * abs(int(change[i]))
        return int(self.codes[0]), tuple(out)


def elementwise_code_map(layer: GemmLayer, step, into: GemmLayer) -> CodeMap | None:
    """The map from ``layer``'s host codes through ``step`` (a ``graph_host`` function's name) to
    ``into``'s input codes, or None where ``layer`` writes no host codes or ``into``'s codes depend on
    the channel (CAG)."""
    out = layer.output
    if not isinstance(out, HostOutput) or isinstance(into.input, CagCodes):
        return None
    host = np.arange(out.q_min, out.q_max + 1, dtype=np.int64)
    return CodeMap(out.q_min, elementwise_codes(layer, host, step, into))

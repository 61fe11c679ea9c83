"""AdaRound's learned weight rounding (Nagel et al. 2020).

Each weight w with scale s rounds to floor(w / s) + h(alpha), where h is the rectified sigmoid
clamp(sigmoid(alpha) * (zeta - gamma) + gamma, 0, 1). alpha starts where h equals the fractional part
of w / s, so the soft weight starts at the float weight. The regulariser sum(1 - |2h - 1|^beta) pushes
every h to 0 or 1 while beta falls; at the end h >= 0.5 (alpha >= 0) decides the rounding for good.
"""

from __future__ import annotations

import torch
import torch.nn as nn

ZETA, GAMMA = 1.1, -0.1


class SoftRounding(nn.Module):
    def __init__(self, weight: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        scaled = weight.detach() / scale
        rest = (scaled - torch.floor(scaled)).clamp(1e-6, 1 - 1e-6)
        self.alpha = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))

    def forward(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)

    def regularizer(self, beta: float) -> torch.Tensor:
        return (1 - (2 * self() - 1).abs().pow(beta)).sum()

    def hard(self) -> torch.Tensor:
        return (self.alpha >= 0).detach()


def beta_schedule(step: int, steps: int, warmup: float, start: float, end: float) -> float | None:
    """The regulariser's exponent at ``step``, or None while the regulariser is still off."""
    warm = int(warmup * steps)
    if step < warm:
        return None
    progress = (step - warm) / max(1, steps - warm)
    return start + (end - start) * progress

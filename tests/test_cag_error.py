"""The CAG error probe counts exactly the elements outside a group's range and sums the real error."""

from __future__ import annotations

import torch
import torch.nn as nn

from sw.quant.cag import CAGQuantizer
from sw.verify.cag_error import CagErrorProbe


def _two_group_quantizer() -> CAGQuantizer:
    q = CAGQuantizer(4, groups=2)
    q.labels = torch.tensor([0, 0, 1])
    q.scale = torch.tensor([0.1, 1.0])
    q.zero_point = torch.tensor([8.0, 0.0])
    q.calibrated.fill_(True)
    q.enabled = True
    return q


def test_probe_counts_clipped_elements_and_error_against_a_hand_computation():
    model = nn.Sequential(_two_group_quantizer())
    # group 0 covers [-0.8, 0.7], group 1 covers [0, 15]
    x = torch.tensor([[0.3, 2.0, 4.0], [-5.0, 0.1, 20.0]])
    with CagErrorProbe(model) as probe, torch.no_grad():
        out = model(x)
    stats = probe.stats["0"]
    assert stats.elements == 6
    assert stats.clipped == 3  # 2.0 and -5.0 in group 0, 20.0 in group 1
    assert stats.clipped_fraction == 0.5
    expected = float(((out.double() - x.double()) ** 2).sum() / (x.double() ** 2).sum())
    assert abs(stats.rel_mse - expected) < 1e-12
    # only the clipped elements err: 2.0 -> 0.7, -5.0 -> -0.8, 20 -> 15 (the rest lie on their grids)
    assert abs(stats.sq_error - (1.3**2 + 4.2**2 + 5.0**2)) < 1e-5
    # the per-tensor min/max quantizer on this input never clips: its error is at most half a step per element
    step = 25.0 / 15
    assert stats.sq_error_minmax <= 6 * (step / 2) ** 2
    # hooks are removed on exit
    model(x)
    assert stats.elements == 6


def test_probe_ignores_other_quantizers():
    model = nn.Sequential(nn.Linear(3, 3))
    with CagErrorProbe(model) as probe:
        model(torch.zeros(1, 3))
    assert probe.stats == {}

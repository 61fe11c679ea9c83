"""CAG: channel-aware grouping of linear-layer inputs (AHCPTQ, methods.md §3.2).

Each input channel c of the consuming linear belongs to one of G groups and is quantized with its
group's scale and integer zero point:

    x_q[..., c] = clamp(round(x / s_g(c)) + z_g(c), 0, 2^k - 1),   x^ = s_g(c) * (x_q - z_g(c))

so the hardware keeps G partial sums per output, each rescaled once:
Y = sum_g s_g * sum_{c in g} (x_q,c - z_g) W_c. ``permutation`` lists the channels group by group;
reading the consumer's weight columns and the producer's output channels in that order makes every
group contiguous without changing the product.

Calibration starts per channel (averaged per-image min/max, as AvgMinMax). Groups come from k-means on
each channel's (scale, zero point): ``raw`` as the reference does (the zero point, in code units,
dominates the distance) or ``normalized`` (each feature divided by its spread across channels; the
default, as it scored better at W4A4 on coco_tiny val).
Without reconstruction the channels are clustered once into G groups, each group taking the union of
its channels' ranges. With reconstruction the per-channel scales are learned first, then merged
progressively (8G -> 4G -> 2G -> G groups at 20/40/60/80 % of the steps), each merge taking the
cluster centres (zero point rounded) as the new group parameters, as the reference does.
"""

from __future__ import annotations

import torch

from .observers import AvgMinMaxObserver
from .quantizer import UniformQuantizer
from .uniform import fake_quantize, qparams_from_range, quantize_codes


def kmeans(points: torch.Tensor, k: int, seed: int = 0, iters: int = 100) -> torch.Tensor:
    """Labels of ``points`` [n, d] in k clusters: k-means++ seeding, then Lloyd's iterations."""
    n = points.shape[0]
    k = min(k, n)
    points = points.double()
    g = torch.Generator().manual_seed(seed)
    centres = [points[torch.randint(n, (1,), generator=g).item()]]
    for _ in range(1, k):
        d2 = torch.cdist(points, torch.stack(centres)).pow(2).amin(1)
        if float(d2.sum()) == 0.0:
            centres.append(points[torch.randint(n, (1,), generator=g).item()])
        else:
            centres.append(points[torch.multinomial(d2 / d2.sum(), 1, generator=g).item()])
    centres = torch.stack(centres)
    labels = torch.cdist(points, centres).argmin(1)
    for _ in range(iters):
        for j in range(k):
            members = points[labels == j]
            if len(members):
                centres[j] = members.mean(0)
        new = torch.cdist(points, centres).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    # Number the groups by first appearance so that equal clusterings give equal labels.
    _, first = torch.unique(labels, return_inverse=True)
    order = {}
    relabel = torch.tensor([order.setdefault(int(v), len(order)) for v in first])
    return relabel


class CAGQuantizer(UniformQuantizer):
    """Grouped per-channel input quantizer; channels on the last dimension."""

    def __init__(self, bits: int, groups: int, features: str = "raw", progressive: bool = False):
        super().__init__(bits, AvgMinMaxObserver(ch_axis=-1), ch_axis=-1)
        self.groups, self.features = groups, features
        self.progressive = progressive  # merged during reconstruction rather than at finalize
        self.register_buffer("labels", torch.zeros(1, dtype=torch.long))
        self.scale, self.zero_point = torch.ones(1), torch.zeros(1)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, groups={self.groups}, features={self.features}"

    @property
    def permutation(self) -> torch.Tensor:
        return torch.argsort(self.labels, stable=True)

    def finalize(self) -> None:
        """Per-channel parameters from the observed ranges; unless merging is left to reconstruction,
        clustered into the final groups at once."""
        lo, hi = self.observer.range()
        scale, zero_point = qparams_from_range(lo, hi, self.bits)
        self.labels = torch.arange(len(scale))
        self.scale, self.zero_point = scale, zero_point
        self.calibrated.fill_(True)
        if not self.progressive:
            labels = self._cluster(self.groups)
            n = int(labels.max()) + 1
            group_lo = torch.stack([lo[labels == j].min() for j in range(n)])
            group_hi = torch.stack([hi[labels == j].max() for j in range(n)])
            self.labels = labels
            self.scale, self.zero_point = qparams_from_range(group_lo, group_hi, self.bits)

    def _cluster(self, groups: int) -> torch.Tensor:
        s, z = self.channel_params()
        points = torch.stack([s, z], 1).double()
        if self.features == "normalized":
            points = points / points.std(0).clamp(min=1e-12)
        return kmeans(points, groups)

    def channel_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.current_scale().detach()
        return scale[self.labels], self.zero_point[self.labels]

    def merge_schedule(self, steps: int) -> dict[int, int]:
        """Step -> group count of the progressive merges: 8G, 4G, 2G, G at 20/40/60/80 % of ``steps``."""
        return {int(steps * f): self.groups * m for f, m in ((0.2, 8), (0.4, 4), (0.6, 2), (0.8, 1))}

    def merge(self, groups: int) -> None:
        """Re-cluster into ``groups`` groups; the new parameters are the cluster centres."""
        s, z = self.channel_params()
        labels = self._cluster(groups)
        n = int(labels.max()) + 1
        self.labels = labels
        self.scale = torch.stack([s[labels == j].mean() for j in range(n)]).float()
        self.zero_point = torch.stack([z[labels == j].mean() for j in range(n)]).round().clamp(0, 2**self.bits - 1).float()

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_codes(x, self.scale[self.labels], self.zero_point[self.labels], self.bits)

    def _quantize(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.current_scale()[self.labels], self.zero_point[self.labels], self.bits)

"""CAG channel groups: per-channel equivalence at G = C, contiguous permutation, clustering features,
progressive merging inside reconstruction."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sw.quant.cag import CAGQuantizer, kmeans
from sw.quant.observers import AvgMinMaxObserver
from sw.quant.quantizer import UniformQuantizer


def _calibrated(q, batches):
    q.observing = True
    for x in batches:
        q(x)
    q.observing = False
    q.finalize()
    q.enabled = True
    return q


def _batches(channels=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    spread = torch.linspace(0.2, 6.0, channels)
    offset = torch.linspace(-1.0, 2.0, channels)[torch.randperm(channels, generator=g)]
    return [torch.randn(5, 40, channels, generator=g) * spread + offset for _ in range(3)]


def test_as_many_groups_as_channels_is_per_channel_quantization():
    batches = _batches()
    grouped = _calibrated(CAGQuantizer(4, groups=24), batches)
    per_channel = _calibrated(UniformQuantizer(4, AvgMinMaxObserver(ch_axis=-1), ch_axis=-1), batches)
    assert grouped.scale.numel() == 24
    for x in batches:
        assert torch.equal(grouped(x), per_channel(x))


def test_groups_share_parameters_and_the_permutation_makes_them_contiguous():
    batches = _batches()
    q = _calibrated(CAGQuantizer(4, groups=4), batches)
    assert q.scale.numel() == 4 and q.labels.numel() == 24
    perm = q.permutation
    assert torch.all(q.labels[perm][1:] >= q.labels[perm][:-1])
    # every value is on its group's grid
    x = batches[0]
    codes = q.codes(x)
    assert torch.equal(q(x), (codes - q.zero_point[q.labels]) * q.scale[q.labels])
    assert codes.min() >= 0 and codes.max() <= 15 and torch.equal(codes, codes.round())
    # a group's range covers all of its channels' observed ranges (no channel clipped harder than its own range)
    lo, hi = q.observer.range()
    group_lo = -q.zero_point * q.scale
    group_hi = (15 - q.zero_point) * q.scale
    assert torch.all(group_lo[q.labels] <= torch.clamp(lo, max=0) + q.scale[q.labels])
    assert torch.all(group_hi[q.labels] >= torch.clamp(hi, min=0) - q.scale[q.labels])
    # reading the consumer's columns in permuted order leaves the product unchanged
    w = torch.randn(7, 24)
    xq = q(x)
    assert torch.allclose(F.linear(xq, w), F.linear(xq[..., perm], w[:, perm]), atol=1e-5)


def test_raw_features_cluster_by_zero_point_normalized_by_both():
    # two scale levels x two zero-point levels; zero points (codes) are ~100x the scales
    s = torch.tensor([0.01, 0.011, 0.5, 0.51] * 2, dtype=torch.float64)
    z = torch.tensor([3.0] * 4 + [12.0] * 4, dtype=torch.float64)
    raw = kmeans(torch.stack([s, z], 1), 2)
    assert raw.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]  # split by zero point only
    norm = torch.stack([s / s.std(), z / z.std()], 1)
    four = kmeans(norm, 4)
    assert len(set(four.tolist())) == 4 and four[0] == four[1] and four[2] == four[3] and four[0] != four[2]
    assert torch.equal(kmeans(norm, 4), four)  # deterministic


def test_progressive_merge_ends_at_the_requested_groups():
    q = _calibrated(CAGQuantizer(4, groups=2, progressive=True), _batches(channels=40))
    assert q.scale.numel() == 40  # per channel until reconstruction merges
    schedule = q.merge_schedule(100)
    assert schedule == {20: 16, 40: 8, 60: 4, 80: 2}
    for groups in schedule.values():
        q.merge(groups)
        assert q.scale.numel() == groups and int(q.labels.max()) + 1 == groups
        assert torch.equal(q.zero_point, q.zero_point.round())


@pytest.mark.parametrize("recipe", ["ahcptq", "ahcptq-cag"])
def test_cag_sits_on_the_listed_inputs(litemedsam, recipe):
    from sw.quant.config import make_config
    from sw.quant.prepare import iter_quantizers, quantize_model

    qmodel = quantize_model(litemedsam, make_config(recipe, "w4a4"))
    cag = [n for n, q in iter_quantizers(qmodel) if isinstance(q, CAGQuantizer)]
    enc = [n for n in cag if n.startswith("image_encoder")]
    dec = [n for n in cag if n.startswith("mask_decoder")]
    assert len(enc) == 10 * 2 and all(n.endswith(("attn.qkv.input_quantizer", "mlp.fc1.input_quantizer")) for n in enc)
    assert len(dec) == 7 * 3 + 2

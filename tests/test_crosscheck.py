"""Integer reference vs fake-quant model, layer by layer, on real images."""

from __future__ import annotations

import pytest

from sw.export.bundle import export_bundle
from sw.quant.calibrate import quantize
from sw.quant.config import make_config
from sw.bundle import load_bundle
from sw.verify.layers import cross_check


def _assert_agreement(stats, floor=0.999):
    assert stats
    for s in stats:
        assert s.max_diff <= 1, (s.layer, s.stage, s.max_diff)
        assert s.match >= floor, (s.layer, s.stage, s.match)


@pytest.mark.parametrize("recipe,bits", [("minmax", "w8a8"), ("ahcptq", "w4a4")])
def test_tiny_sam_vit_layers_agree(tiny_sam_vit, calib_items, tmp_path, recipe, bits):
    qmodel, _ = quantize(tiny_sam_vit, make_config(recipe, bits, recon="none"), calib_items[:2], progress=False)
    bundle = load_bundle(export_bundle(qmodel, calib_items[:2], tmp_path / "b", progress=False))
    stats = cross_check(qmodel, bundle, calib_items[2:3], progress=False)
    assert {s.stage for s in stats} == {"codes", "host", "softmax", "A.V"}
    # Tiny decoder layers have a few hundred elements, so one flipped code is 0.3 %: bound the total.
    assert max(s.max_diff for s in stats) <= 1
    assert sum(s.equal for s in stats) / sum(s.elements for s in stats) >= 0.999


def test_litemedsam_w4a4_every_layer_agrees_on_a_real_image(litemedsam, calib_items, tmp_path):
    """CAG, HLUQ and AGQ encodings of the real model (statistics only: reconstruction changes values,
    not the integer arithmetic)."""
    qmodel, _ = quantize(litemedsam, make_config("ahcptq", "w4a4", recon="none"), calib_items[:1], progress=False)
    bundle = load_bundle(export_bundle(qmodel, calib_items[:1], tmp_path / "b", progress=False))
    stats = cross_check(qmodel, bundle, calib_items[1:2], progress=False)
    assert len(stats) == 124
    _assert_agreement(stats)

"""BIG: bimodal detection and exact sign folding on the real LiteMedSAM."""

from __future__ import annotations

import numpy as np
import torch

from sw.quant.big import apply_big, channel_signs, count_peaks
from sw.quant.config import make_config
from sw.quant.prepare import quantize_model


def test_peak_counting_on_known_shapes():
    rng = np.random.default_rng(0)
    unimodal = rng.normal(0, 1, 20000)
    bimodal = np.concatenate([rng.normal(-8, 1, 10000), rng.normal(8, 1, 10000)])
    assert count_peaks(unimodal) == 1
    assert count_peaks(bimodal) == 2
    assert count_peaks(np.zeros(100)) == 1


def test_zero_mean_channel_gets_plus_one():
    keys = torch.tensor([[1.0, -2.0, 0.0], [3.0, -1.0, 0.0]])
    assert channel_signs(keys).tolist() == [1.0, -1.0, 1.0]


def _decode(model, item):
    with torch.inference_mode():
        x, meta = model.preprocess(item.image)
        embedding = model.encode(x)
        return model.decode(embedding, model.boxes_to_input(item.boxes, meta))


def test_folding_is_exact_on_real_images(litemedsam, calib_items):
    qmodel = quantize_model(litemedsam, make_config("minmax", "w8a8"))  # quantizers off: the float function
    before = _decode(qmodel, calib_items[1])
    reports = apply_big(qmodel, lambda: _decode(qmodel, calib_items[0]), scope="detected")
    by_name = {r.module: r for r in reports}
    assert len(reports) == 10 + 7  # every attention with projected keys was examined
    folded = [r for r in reports if r.folded]
    # the decoder token-to-image keys (image embedding + PE) are the bimodal case the paper reports
    assert any("token_to_image" in r.module for r in folded), [(r.module, r.peaks) for r in reports]
    assert all(r.bimodal for r in folded) and all(r.negative_channels > 0 for r in folded)
    assert not any(by_name[n].folded for n in by_name if not by_name[n].bimodal)
    after = _decode(qmodel, calib_items[1])
    for a, b in zip(before, after):
        assert (a - b).abs().max().item() < 1e-4
    # folding made the keys unimodal where it was applied
    again = apply_big(qmodel, lambda: _decode(qmodel, calib_items[0]), scope="none")
    assert all(r.peaks != 2 for r in again if r.module in {f.module for f in folded})

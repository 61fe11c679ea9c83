"""Captured input codes (sw/export/capture.py) are what the co-simulation feeds the hardware: they must
be each layer's own input codes, so the integer reference run on them reproduces the bundle layer."""

from __future__ import annotations

import numpy as np

from sw.export.capture import capture_inputs, inputs_path, save_inputs
from sw.quant.config import make_config
from sw.quant.qmodules import QuantLinear
from sw.workflow import quantize


def test_capture_saves_every_linear_input_and_the_attention_codes(tiny_sam_vit, calib_items, tmp_path):
    qmodel, _ = quantize(tiny_sam_vit, make_config("ahcptq", "w4a4", recon="none"), calib_items[:1], progress=False)
    found = capture_inputs(qmodel, calib_items[1], max_rows=16)
    linears = {n: m for n, m in qmodel.named_modules() if isinstance(m, QuantLinear)}
    assert {f"{n}.input" for n in linears} <= set(found)
    for name, module in linears.items():
        codes = found[f"{name}.input"]
        assert codes.dtype == np.uint8 and codes.shape[1] == module.in_features and 0 < codes.shape[0] <= 16
        assert codes.max() < 2 ** module.input_quantizer.bits
    probs = [k for k in found if k.endswith(".probs")]
    assert probs and all(found[k].ndim == 3 for k in probs)
    path = save_inputs(found, tmp_path / "bundle")
    assert path == inputs_path(tmp_path / "bundle") == tmp_path / "bundle.inputs.npz"
    with np.load(path) as data:
        assert set(data.files) == set(found)

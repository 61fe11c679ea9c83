"""Captured input codes (sw/export/capture.py) are what the co-simulation feeds the hardware: they must
be each layer's own input codes, saved in the contract's captured-inputs file (sw/bundle/captured.py)."""

from __future__ import annotations

import numpy as np

import pytest

from sw.bundle import BundleError, captured_inputs_path, load_captured_inputs, save_captured_inputs
from sw.export.capture import capture_inputs
from sw.quant.config import make_config
from sw.quant.qmodules import QuantLinear
from sw.quant.calibrate import quantize


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
    path = save_captured_inputs(found, tmp_path / "bundle")
    assert path == captured_inputs_path(tmp_path / "bundle") == tmp_path / "bundle.inputs.npz"
    captured = load_captured_inputs(path)
    assert set(captured.arrays) == set(found)
    name = next(iter(linears))
    np.testing.assert_array_equal(captured.gemm_input(name), found[f"{name}.input"])
    attn = probs[0].removesuffix(".probs")
    assert captured.attention(attn).probs.shape == found[probs[0]].shape
    with pytest.raises(BundleError, match="no captured codes 'nowhere.input'"):
        captured.gemm_input("nowhere")


def test_missing_or_corrupt_captured_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(BundleError, match="no captured inputs"):
        load_captured_inputs(tmp_path / "b.inputs.npz")
    (tmp_path / "b.inputs.npz").write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="corrupt captured-inputs file"):
        load_captured_inputs(tmp_path / "b.inputs.npz")

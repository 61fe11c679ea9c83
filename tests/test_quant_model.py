"""Quantizer placement, calibration and exactness on the real LiteMedSAM and a tiny SAM ViT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from sw.quant.calibrate import calibrate
from sw.quant.config import make_config
from sw.quant.prepare import iter_quantizers, quantize_model, set_quant_state, weight_owner
from sw.quant.qmodules import QuantConv2d, QuantLinear
from sw.quant.state import load_quant_state, save_quant_state


def _outputs(model, item):
    with torch.inference_mode():
        x, meta = model.preprocess(item.image)
        embedding = model.encode(x)
        logits, iou = model.decode(embedding, model.boxes_to_input(item.boxes, meta))
    return embedding, logits, iou


@pytest.fixture(scope="module")
def calibrated_minmax(litemedsam, calib_items):
    qmodel = quantize_model(litemedsam, make_config("minmax", "w4a4"))
    calibrate(qmodel, calib_items[:2], progress=False)
    return qmodel


def test_quantizers_sit_at_every_listed_point(litemedsam):
    qmodel = quantize_model(litemedsam, make_config("minmax", "w8a8"))
    names = [n for n, _ in iter_quantizers(qmodel)]
    # float parts: the stem (patch embedding + conv stage 0), prompt encoder, upscaling /
    # hypernetwork / IoU heads
    for float_part in ("image_encoder.patch_embed", "image_encoder.layers.0.", "prompt_encoder", "mask_decoder.output_upscaling",
                       "mask_decoder.output_hypernetworks_mlps", "mask_decoder.iou_prediction_head"):
        assert not any(n.startswith(float_part) for n in names), float_part
    # every GEMM-bearing module in the quantized scope was swapped
    for scope in (*qmodel.image_encoder.layers[1:], qmodel.image_encoder.neck, qmodel.mask_decoder.transformer):
        assert not any(type(m) in (nn.Linear, nn.Conv2d) for m in scope.modules())
    n_gemm = sum(isinstance(m, (QuantLinear, QuantConv2d)) for m in qmodel.modules())
    n_float_gemm = sum(type(m) in (nn.Linear, nn.Conv2d) for m in litemedsam.image_encoder.layers[1:].modules())
    n_float_gemm += sum(type(m) in (nn.Linear, nn.Conv2d) for m in litemedsam.image_encoder.neck.modules())
    n_float_gemm += sum(type(m) is nn.Linear for m in litemedsam.mask_decoder.transformer.modules())
    assert n_gemm == n_float_gemm
    # attention: q, k, v and the post-softmax map in all 10 TinyViT blocks and 7 decoder attentions
    for role in ("q_quantizer", "k_quantizer", "v_quantizer", "softmax_quantizer"):
        enc = [n for n in names if n.endswith(role) and n.startswith("image_encoder")]
        dec = [n for n in names if n.endswith(role) and n.startswith("mask_decoder")]
        assert (len(enc), len(dec)) == (10, 7), role
    # MLP: post-LN lin1 input and post-GELU/ReLU lin2 input
    assert "image_encoder.layers.1.blocks.0.mlp.fc2.input_quantizer" in names
    assert "mask_decoder.transformer.layers.0.mlp.lin2.input_quantizer" in names


def test_quantization_off_reproduces_float_exactly(litemedsam, calibrated_minmax, calib_items):
    set_quant_state(calibrated_minmax, act=False, weight=False)
    try:
        for a, b in zip(_outputs(litemedsam, calib_items[2]), _outputs(calibrated_minmax, calib_items[2])):
            assert torch.equal(a, b)
    finally:
        set_quant_state(calibrated_minmax, act=True, weight=True)
    # and quantization on really changes the result
    e_f, l_f, _ = _outputs(litemedsam, calib_items[2])
    e_q, l_q, _ = _outputs(calibrated_minmax, calib_items[2])
    assert not torch.equal(e_f, e_q)


def test_every_quantizer_output_lies_on_its_grid(calibrated_minmax, calib_items):
    seen = {}

    def check(name):
        def hook(module, inputs, output):
            scale = module._shaped(module.scale, output)
            zp = module._shaped(module.zero_point, output)
            codes = torch.round(output / scale) + zp
            assert codes.min() >= 0 and codes.max() <= 2**module.bits - 1, name
            assert torch.equal((codes - zp) * scale, output), name
            seen[name] = True
        return hook

    handles = [q.register_forward_hook(check(n)) for n, q in iter_quantizers(calibrated_minmax)]
    try:
        _outputs(calibrated_minmax, calib_items[3])
        # weights: quantize each directly (forward may serve a cached quantized weight)
        with torch.no_grad():
            for name, q in iter_quantizers(calibrated_minmax):
                if name.endswith("weight_quantizer"):
                    q(weight_owner(calibrated_minmax, name).weight)
    finally:
        for h in handles:
            h.remove()
    assert set(seen) == {n for n, _ in iter_quantizers(calibrated_minmax)}


def test_calibration_is_deterministic_and_state_round_trips(litemedsam, calibrated_minmax, calib_items, tmp_path):
    again = quantize_model(litemedsam, make_config("minmax", "w4a4"))
    calibrate(again, calib_items[:2], progress=False)
    for (n, a), (_, b) in zip(iter_quantizers(calibrated_minmax), iter_quantizers(again)):
        assert torch.equal(a.scale, b.scale) and torch.equal(a.zero_point, b.zero_point), n
    path = tmp_path / "state.safetensors"
    save_quant_state(calibrated_minmax, path)
    restored = load_quant_state(litemedsam, path)
    for a, b in zip(_outputs(calibrated_minmax, calib_items[3]), _outputs(restored, calib_items[3])):
        assert torch.equal(a, b)


@pytest.mark.parametrize("recipe", ["percentile", "omse"])
def test_statistic_recipes_calibrate_and_differ_from_minmax(litemedsam, calibrated_minmax, calib_items, recipe):
    qmodel = quantize_model(litemedsam, make_config(recipe, "w4a4"))
    calibrate(qmodel, calib_items[:1], progress=False)
    ranges = {n: (q.scale.clone()) for n, q in iter_quantizers(qmodel) if not n.endswith("weight_quantizer")}
    mm = {n: q.scale for n, q in iter_quantizers(calibrated_minmax) if not n.endswith("weight_quantizer")}
    # clipping recipes pick narrower ranges than min/max somewhere (on the same or fewer images)
    assert sum(bool((ranges[n] < mm[n]).all()) for n in ranges) > len(ranges) // 2
    masks, _ = qmodel.predict(calib_items[0].image, calib_items[0].boxes)
    assert masks.shape[0] == len(calib_items[0].boxes)


def test_tiny_sam_vit_quantizes_with_exact_float_fallback(tiny_sam_vit, calib_items):
    qmodel = quantize_model(tiny_sam_vit, make_config("minmax", "w6a6"))
    names = [n for n, _ in iter_quantizers(qmodel)]
    assert sum(n.endswith("softmax_quantizer") for n in names) == 4 + 7
    assert not any(n.startswith("image_encoder.patch_embed") for n in names)
    calibrate(qmodel, calib_items[:1], progress=False)
    set_quant_state(qmodel, act=False, weight=False)
    for a, b in zip(_outputs(tiny_sam_vit, calib_items[1]), _outputs(qmodel, calib_items[1])):
        assert torch.equal(a, b)
    set_quant_state(qmodel, act=True, weight=True)
    masks, iou = qmodel.predict(calib_items[1].image, calib_items[1].boxes)
    assert masks.shape == (len(calib_items[1].boxes), *calib_items[1].image.shape[:2]) and np.isfinite(iou).all()


def test_ptq4sam_s_state_round_trip_replays_big_and_agq(litemedsam, calib_items, tmp_path):
    qmodel = quantize_model(litemedsam, make_config("ptq4sam-s", "w4a4"))
    calibrate(qmodel, calib_items[:1], progress=False)
    assert any(r.folded for r in qmodel.big_reports)
    taus = {n: int(q.tau) for n, q in iter_quantizers(qmodel) if n.endswith("softmax_quantizer")}
    assert len(taus) == 17 and set(taus.values()) <= {1, 2, 4}
    path = tmp_path / "ptq4sam_s.safetensors"
    save_quant_state(qmodel, path)
    restored = load_quant_state(litemedsam, path)
    for a, b in zip(_outputs(qmodel, calib_items[1]), _outputs(restored, calib_items[1])):
        assert torch.equal(a, b)
    # saving the restored model writes the same file: nothing (BIG signs, tau) was lost
    again = tmp_path / "again.safetensors"
    save_quant_state(restored, again)
    assert again.read_bytes() == path.read_bytes()

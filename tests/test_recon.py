"""Block reconstruction: AdaRound rounding, unit discovery, training, and a leak-free result."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sw.quant.audit import leaking_quantizers
from sw.quant.calibrate import calibrate
from sw.quant.config import make_config
from sw.quant.forward import run_items
from sw.quant.prepare import iter_quantizers, quantize_model
from sw.quant.recon.adaround import SoftRounding, beta_schedule
from sw.quant.recon.optimize import output_error, train_unit
from sw.quant.recon.streams import encoder_segments, encoder_stem
from sw.quant.recon.units import capture, units_in_order
from statecheck import assert_deterministic_round_trip


def test_soft_rounding_starts_at_the_float_weight():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 16, generator=g)
    s = torch.rand(8, 1, generator=g) * 0.1 + 0.01
    r = SoftRounding(w, s)
    assert torch.allclose((torch.floor(w / s) + r()) * s, w, atol=1e-5)
    assert torch.equal(r.hard(), r() >= 0.5)


def test_beta_schedule_warms_up_then_falls_linearly():
    assert beta_schedule(0, 100, 0.2, 20, 2) is None and beta_schedule(19, 100, 0.2, 20, 2) is None
    assert beta_schedule(20, 100, 0.2, 20, 2) == 20
    assert beta_schedule(100, 100, 0.2, 20, 2) == pytest.approx(2)
    assert 2 < beta_schedule(60, 100, 0.2, 20, 2) < 20


@pytest.mark.parametrize("recipe", ["adaround", "brecq", "qdrop", "qdrop+big", "qdrop+agq", "ptq4sam-l"])
def test_reconstruction_recipes(recipe):
    cfg = make_config(recipe, "w4a4")
    assert cfg.recon in ("adaround", "brecq", "qdrop")
    assert (cfg.softmax_quantizer == "agq") == (recipe in ("qdrop+agq", "ptq4sam-l"))
    assert (cfg.big == "detected") == (recipe in ("qdrop+big", "ptq4sam-l"))


def test_units_follow_call_order_and_block_granularity(litemedsam, calib_items):
    qmodel = quantize_model(litemedsam, make_config("qdrop", "w4a4"))
    with torch.no_grad():
        state = encoder_stem(qmodel, qmodel.preprocess(calib_items[0].image)[0])
        segments = encoder_segments(qmodel)
        block = units_in_order(qmodel, segments[0], state, "block")
        layers = units_in_order(qmodel, segments[0], state, "layer")
    prefix = "image_encoder.layers.1.blocks.0"
    # TinyViT runs attention, then the local conv, then the MLP (its modules are registered in another order)
    assert block == [f"{prefix}.attn", f"{prefix}.local_conv", f"{prefix}.mlp"]
    assert layers == [f"{prefix}.attn.qkv", f"{prefix}.attn.proj", f"{prefix}.local_conv",
                      f"{prefix}.mlp.fc1", f"{prefix}.mlp.fc2"]
    assert segments[2].path == "image_encoder.layers.1.downsample"
    with torch.no_grad():
        merge = units_in_order(qmodel, segments[2], segments[1].run(qmodel, segments[0].run(qmodel, state)), "block")
    assert merge == ["image_encoder.layers.1.downsample"]  # no attention/MLP inside: one unit
    # a layer unit's float (nn.Linear) and quantized (QuantLinear) captures line up row for row
    path = f"{prefix}.attn.qkv"
    fp = capture(litemedsam, segments[0], [state], [path], with_output=True)[path]
    q = capture(qmodel, segments[0], [state], [path], with_output=False)[path]
    assert fp.rows == q.rows == fp.output.shape[0] and fp.args[0].dim() == 2


@pytest.fixture(scope="module")
def tiny_reconstructed(tiny_sam_vit, calib_items):
    qmodel = quantize_model(tiny_sam_vit, make_config("ptq4sam-l", "w4a4", recon_iters=6, recon_tokens=256))
    calibrate(qmodel, calib_items[:2], progress=False, fp_model=tiny_sam_vit)
    return qmodel


def test_training_a_unit_lowers_itsoutput_error(tiny_sam_vit, calib_items):
    cfg = make_config("brecq", "w4a4", recon_iters=60, recon_tokens=512)
    qmodel = quantize_model(tiny_sam_vit, replace(cfg, recon="none"))
    calibrate(qmodel, calib_items[:2], progress=False)  # statistics only; the unit is trained below
    with torch.no_grad():
        states = [encoder_stem(tiny_sam_vit, tiny_sam_vit.preprocess(it.image)[0]) for it in calib_items[:2]]
    segment = encoder_segments(qmodel)[0]
    path = "image_encoder.blocks.0.mlp"
    fp = capture(tiny_sam_vit, segment, states, [path], with_output=True)[path]
    quant_in = capture(qmodel, segment, states, [path], with_output=False)[path]
    unit = qmodel.get_submodule(path)

    def error() -> float:
        with torch.no_grad():
            return output_error(unit(*quant_in.args), fp.output).item()

    before = error()
    torch.manual_seed(0)
    train_unit(unit, quant_in, fp, cfg)
    assert error() < 0.9 * before
    assert all(q.round_up is not None for n, q in iter_quantizers(unit) if n.endswith("weight_quantizer"))


def test_reconstructed_model_quantizes_every_element(tiny_reconstructed, calib_items):
    forward = lambda: run_items(tiny_reconstructed, calib_items[2:3], "audit", progress=False)  # noqa: E731
    assert leaking_quantizers(tiny_reconstructed, forward) == []
    # the audit catches the published bug: one linear input still dropping half its elements
    name, q = next((n, q) for n, q in iter_quantizers(tiny_reconstructed) if n.endswith("lin1.input_quantizer"))
    q.drop_prob = 0.5
    try:
        assert leaking_quantizers(tiny_reconstructed, forward) == [name]
    finally:
        q.drop_prob = 1.0
    # and so is a learnable scale that was never folded back
    q.learned_scale = torch.nn.Parameter(q.scale * 1.5)
    try:
        assert leaking_quantizers(tiny_reconstructed, forward) == [name]
    finally:
        q.learned_scale = None


def test_reconstruction_is_deterministic_and_its_state_round_trips(tiny_sam_vit, tiny_reconstructed, calib_items, tmp_path):
    again = quantize_model(tiny_sam_vit, tiny_reconstructed.quant_config)
    calibrate(again, calib_items[:2], progress=False, fp_model=tiny_sam_vit)
    assert_deterministic_round_trip(tiny_reconstructed, again, tiny_sam_vit, calib_items[2], tmp_path)


def test_litemedsam_reconstruction_runs_end_to_end(litemedsam, calib_items):
    """Every encoder and decoder unit of the real model is reached and left leak-free."""
    cfg = make_config("ptq4sam-l", "w4a4", recon_iters=1, recon_tokens=256, recon_prompts=1)
    qmodel = quantize_model(litemedsam, cfg)
    calibrate(qmodel, calib_items[:1], progress=False, fp_model=litemedsam)
    units = [u["unit"] for u in qmodel.recon_log["units"]]
    assert len(units) == 33 + 9 and units[-1] == "mask_decoder.transformer.final_attn_token_to_image"
    assert units[32] == "image_encoder.neck"
    forward = lambda: run_items(qmodel, calib_items[1:2], "audit", progress=False)  # noqa: E731
    assert leaking_quantizers(qmodel, forward) == []

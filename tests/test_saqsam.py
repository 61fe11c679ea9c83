"""SAQ-SAM: the focus-IoU loss, PCC's clip search, PAR's layer skipping, and the saqsam recipes'
leak-free, deterministic, round-tripping result."""

from __future__ import annotations

import pytest
import torch

from sw.errors import SamhwError
from sw.quant.audit import leaking_quantizers
from sw.quant.calibrate import calibrate
from sw.quant.config import make_config
from sw.quant.forward import run_items
from sw.quant.pcc import SEARCHED, apply_pcc, focus_loss, search_attention, set_range
from sw.quant.prepare import quantize_model
from sw.quant.recon.par import encoder_stages, image_tokens, run_segments, stage_name
from sw.quant.recon.streams import encoder_stem
from statecheck import assert_deterministic_round_trip


def test_focus_loss_is_0_for_identical_and_1_for_disjoint_maps():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 5, 9, generator=g).softmax(-1)
    assert focus_loss(a, a.clone()).item() == 0.0
    left = torch.zeros(2, 3, 5, 9)
    left[..., 0] = 1.0
    right = torch.zeros(2, 3, 5, 9)
    right[..., 4] = 1.0
    assert focus_loss(left, right).item() == 1.0
    # one row focused on {0, 1}, the other map's on {1}: IoU 1/2 for that head
    b = torch.tensor([[[0.5, 0.5, 0.0]]])
    c = torch.tensor([[[0.1, 0.8, 0.1]]])
    assert focus_loss(b, c).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one shape"):
        focus_loss(a, a[..., :3])


@pytest.fixture(scope="module")
def float_pass(litemedsam, calib_items):
    """One real image through the float LiteMedSAM: its boxes, image embedding and stage outputs."""
    item = calib_items[0]
    with torch.no_grad():
        x, meta = litemedsam.preprocess(item.image)
        state = encoder_stem(litemedsam, x)
        outputs = []
        for stage in encoder_stages(litemedsam):
            state = run_segments(litemedsam, stage, state)
            outputs.append(state[0])
        return litemedsam.boxes_to_input(item.boxes, meta), litemedsam.encode(x), outputs


def test_layer_skipping_without_quantization_is_the_float_decoder(litemedsam, float_pass):
    boxes, embedding, outputs = float_pass
    stages = encoder_stages(litemedsam)
    assert [stage_name(litemedsam, s) for s in stages] == [f"image_encoder.layers.{i}" for i in (1, 2, 3)]
    captured = {}
    handle = litemedsam.mask_decoder.transformer.register_forward_hook(lambda _m, _a, out: captured.update(keys=out[1]))
    with torch.no_grad():
        try:
            litemedsam.decode(embedding, boxes)
        finally:
            handle.remove()
        assert torch.equal(image_tokens(litemedsam, stages, len(stages) - 1, outputs[-1], boxes), captured["keys"])
        # TinyViT's stage 1 output is 160 wide: it runs float stage 2 (which widens to the neck's 320)
        # and skips stage 3
        assert outputs[0].shape[-1] == 160 and outputs[1].shape[-1] == litemedsam.image_encoder.neck[0].in_channels
        ran = []
        handles = [litemedsam.get_submodule(s.path).register_forward_pre_hook(lambda _m, _a, p=s.path: ran.append(p))
                   for stage in stages[1:] for s in stage]
        try:
            image_tokens(litemedsam, stages, 0, outputs[0], boxes)
        finally:
            for h in handles:
                h.remove()
    assert ran == [s.path for s in stages[1]]


def test_sam_vit_stages_end_at_global_attention(tiny_sam_vit):
    stages = encoder_stages(tiny_sam_vit)  # global attention in blocks 1 and 3
    assert [stage_name(tiny_sam_vit, s) for s in stages] == ["image_encoder.blocks.0-1", "image_encoder.blocks.2-3"]


def test_pcc_clip_is_no_worse_than_no_clipping(litemedsam, float_pass):
    """Token-to-image attention of the real decoder at W4A4 on a real image (two prompts): the four
    searched ranges keep the float attention focus at least as well as the unclipped (min/max) ranges."""
    boxes, embedding, _ = float_pass
    qmodel = quantize_model(litemedsam, make_config("saqsam-star", "w4a4"))
    attn = qmodel.get_submodule("mask_decoder.transformer.layers.0.cross_attn_token_to_image")
    captured = {}
    handles = [attn.register_forward_pre_hook(lambda _m, _a, kw: captured.update({"in": (kw["q"], kw["k"])}),
                                              with_kwargs=True),
               attn.softmax_quantizer.register_forward_pre_hook(lambda _m, a: captured.update(map=a[0]))]
    with torch.no_grad():
        try:
            qmodel.decode(embedding, boxes[:2])  # every quantizer off: the float attention
        finally:
            for h in handles:
                h.remove()
        (q_in, k_in), reference = captured["in"], captured["map"]
        records = search_attention(attn, q_in, k_in, reference, 0.5)
        pcc = focus_loss(attn.probabilities(attn.query(q_in), attn.key(k_in)), reference)
        assert pcc.item() == pytest.approx(records[-1]["loss"])
        for field, side in SEARCHED:  # no clipping: each quantizer's input min/max, in the same order
            q = attn.get_submodule(field)
            seen = {}
            handle = q.register_forward_pre_hook(lambda _m, a: seen.update(x=a[0]))
            try:
                attn.query(q_in) if side == "query" else attn.key(k_in)
            finally:
                handle.remove()
            set_range(q, seen["x"].min(), seen["x"].max())
        unclipped = focus_loss(attn.probabilities(attn.query(q_in), attn.key(k_in)), reference)
    assert 0.0 < pcc.item() <= unclipped.item()


def test_pcc_needs_a_prompted_image(tiny_sam_vit, calib_items):
    from dataclasses import replace

    qmodel = quantize_model(tiny_sam_vit, make_config("saqsam-star", "w4a4"))
    with pytest.raises(SamhwError, match="box prompt"):
        apply_pcc(qmodel, [replace(calib_items[0], boxes=calib_items[0].boxes[:0])], progress=False)


def test_saqsam_config_rejects_bad_settings():
    with pytest.raises(SamhwError, match="pcc_threshold"):
        make_config("saqsam-star", "w4a4", pcc_threshold=1.5)
    cfg = make_config("saqsam", "w6a6")
    assert cfg.pcc and cfg.recon == "par" and cfg.mse_norm == 2.4 and cfg.softmax_quantizer == "agq"
    assert make_config("saqsam-star", "w6a6").recon == "none"


def test_combined_recipe_takes_its_longer_par_at_w4a4_only_and_overrides_win():
    w4, w6 = make_config("saqsam+hluq+cag", "w4a4"), make_config("saqsam+hluq+cag", "w6a6")
    assert (w4.recon_iters, w6.recon_iters) == (70, 50)
    assert w4.recon_iters * w4.scale_lr == pytest.approx(w6.recon_iters * w6.scale_lr)
    assert make_config("saqsam", "w4a4").recon_iters == 50
    assert make_config("saqsam+hluq+cag", "w4a4", recon_iters=4).recon_iters == 4


# A coarse OMSE grid keeps the tiny-model calibrations fast; PCC and PAR run as in the recipe.
FAST = dict(mse_grid=10)


def _saqsam(model, items):
    qmodel = quantize_model(model, make_config("saqsam", "w4a4", recon_iters=4, **FAST))
    calibrate(qmodel, items, progress=False, fp_model=model, seed=0)
    return qmodel


@pytest.fixture(scope="module")
def tiny_saqsam(tiny_sam_vit, calib_items):
    return _saqsam(tiny_sam_vit, calib_items[:2])


def test_saqsam_is_leak_free_with_pcc_clips_kept(tiny_saqsam, calib_items):
    assert [u["unit"] for u in tiny_saqsam.recon_log["units"]] == [
        "image_encoder.blocks.0-1", "image_encoder.blocks.2-3", "image_encoder.neck",
        "mask_decoder.transformer.layers.0", "mask_decoder.transformer.layers.1",
        "mask_decoder.transformer.final_attn_token_to_image"]
    forward = lambda: run_items(tiny_saqsam, calib_items[2:3], "audit", progress=False)  # noqa: E731
    assert leaking_quantizers(tiny_saqsam, forward) == []
    # the 28 PCC quantizers were searched twice each and left out of the statistics pass
    pcc = {r["quantizer"] for r in tiny_saqsam.pcc_log}
    assert len(pcc) == 28 and len(tiny_saqsam.pcc_log) == 56
    assert all(tiny_saqsam.get_submodule(n).observer.calls == 0 for n in pcc)
    assert tiny_saqsam.get_submodule("mask_decoder.transformer.layers.0.self_attn.v_quantizer").observer.calls == 2


def test_saqsam_star_is_leak_free(tiny_sam_vit, calib_items):
    qmodel = quantize_model(tiny_sam_vit, make_config("saqsam-star", "w4a4", **FAST))
    calibrate(qmodel, calib_items[:1], progress=False)
    forward = lambda: run_items(qmodel, calib_items[2:3], "audit", progress=False)  # noqa: E731
    assert leaking_quantizers(qmodel, forward) == []


def test_saqsam_is_deterministic_and_its_state_round_trips(tiny_sam_vit, tiny_saqsam, calib_items, tmp_path):
    again = _saqsam(tiny_sam_vit, calib_items[:2])
    assert_deterministic_round_trip(tiny_saqsam, again, tiny_sam_vit, calib_items[2], tmp_path)


def test_combined_recipe_keeps_the_pcc_clips_per_tensor_and_groups_the_rest(tiny_sam_vit, calib_items, tmp_path):
    """saqsam+hluq+cag: PCC's q/k projection inputs stay uniform (their clip is one range per tensor), every
    other grouped projection input is CAG, the MLPs' second linears HLUQ; the result exports. (The compiler
    runs TinyViT encoders only, so compiling this recipe is checked on LiteMedSAM, not here.)"""
    from sw.bundle import load_bundle
    from sw.export.bundle import export_bundle
    from sw.quant.prepare import iter_quantizers

    qmodel = quantize_model(tiny_sam_vit, make_config("saqsam+hluq+cag", "w4a4", recon_iters=4, **FAST))
    calibrate(qmodel, calib_items[:2], progress=False, fp_model=tiny_sam_vit, seed=0)
    kinds = {name: type(q).__name__ for name, q in iter_quantizers(qmodel)}
    decoder = "mask_decoder.transformer.layers.0.cross_attn_token_to_image."
    assert kinds[decoder + "q_proj.input_quantizer"] == kinds[decoder + "k_proj.input_quantizer"] == "UniformQuantizer"
    assert kinds[decoder + "v_proj.input_quantizer"] == "CAGQuantizer"
    assert kinds["image_encoder.blocks.0.attn.qkv.input_quantizer"] == "CAGQuantizer"
    assert kinds["image_encoder.blocks.0.mlp.lin2.input_quantizer"] == "HLUQQuantizer"
    assert kinds["mask_decoder.transformer.layers.0.mlp.lin2.input_quantizer"] == "HLUQQuantizer"
    assert {r["quantizer"] for r in qmodel.pcc_log} >= {decoder + "q_proj.input_quantizer", decoder + "k_proj.input_quantizer"}
    forward = lambda: run_items(qmodel, calib_items[2:3], "audit", progress=False)  # noqa: E731
    assert leaking_quantizers(qmodel, forward) == []
    bundle = load_bundle(export_bundle(qmodel, calib_items[:2], tmp_path / "bundle", progress=False))
    assert bundle.header.recipe == "saqsam+hluq+cag"


def test_combined_recipe_on_litemedsam_exports_and_compiles_for_the_core(litemedsam, calib_items, tmp_path):
    """The combined recipe's LiteMedSAM bundle (statistics only: PCC, BIG, AGQ, HLUQ, CAG; PAR leaves
    the formats as they are) compiles to the W4 core, every quantized layer with it."""
    from hw.compiler.model import compile_bundle
    from hw.core.config import load_core_config
    from sw.bundle import HOST_LAYER, load_bundle
    from sw.export.bundle import export_bundle

    qmodel = quantize_model(litemedsam, make_config("saqsam+hluq+cag", "w4a4", recon="none"))
    calibrate(qmodel, calib_items[:1], progress=False, fp_model=litemedsam)
    bundle = load_bundle(export_bundle(qmodel, calib_items[:1], tmp_path / "bundle", progress=False))
    program = compile_bundle(bundle, load_core_config("w4-16x16"))
    compiled = {inv.spec.layer for inv in program.invocations}
    assert compiled == set(bundle.layers) - {HOST_LAYER}
    formats = {type(getattr(bundle.layers[name], "input", None)).__name__ for name in bundle.layers}
    assert {"CagCodes", "HluqCodes"} <= formats, formats

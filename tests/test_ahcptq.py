"""AHCPTQ end to end on a tiny SAM ViT: reconstruction merges CAG groups, learns HLUQ scales, leaves
no leak, and its state file replays byte for byte."""

from __future__ import annotations

import torch

from sw.quant.audit import leaking_quantizers
from sw.quant.cag import CAGQuantizer
from sw.quant.calibrate import calibrate
from sw.quant.config import make_config
from sw.quant.forward import run_items
from sw.quant.hluq import HLUQQuantizer
from sw.quant.prepare import iter_quantizers, quantize_model
from sw.quant.state import load_quant_state, save_quant_state


def test_ahcptq_reconstruction_on_tiny_sam_vit(tiny_sam_vit, calib_items, tmp_path):
    cfg = make_config("ahcptq", "w4a4", recon_iters=10, recon_tokens=256)
    qmodel = quantize_model(tiny_sam_vit, cfg)
    calibrate(qmodel, calib_items[:2], progress=False, fp_model=tiny_sam_vit)
    quantizers = dict(iter_quantizers(qmodel))
    cag = [q for q in quantizers.values() if isinstance(q, CAGQuantizer)]
    hluq = [q for q in quantizers.values() if isinstance(q, HLUQQuantizer)]
    assert len(cag) == 4 * 2 + 7 * 3 + 2 and len(hluq) == 4 + 2
    assert all(q.scale.numel() == 4 and int(q.labels.max()) == 3 for q in cag)
    forward = lambda: run_items(qmodel, calib_items[2:3], "audit", progress=False)  # noqa: E731
    assert leaking_quantizers(qmodel, forward) == []

    path = tmp_path / "ahcptq.safetensors"
    save_quant_state(qmodel, path)
    restored = load_quant_state(tiny_sam_vit, path)
    again = tmp_path / "again.safetensors"
    save_quant_state(restored, again)
    assert again.read_bytes() == path.read_bytes()
    item = calib_items[2]
    with torch.no_grad():
        a, b = qmodel.predict(item.image, item.boxes), restored.predict(item.image, item.boxes)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()

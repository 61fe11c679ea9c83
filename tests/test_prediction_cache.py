"""The float-mask cache used by scripts/results_table.py must give back exactly what was saved."""

import numpy as np
import pytest

from sw.errors import SamhwError
from sw.eval.prediction_cache import cached_predictions, load_predictions, save_predictions, val_source


def test_round_trip_is_exact_for_odd_shapes_and_empty_images(tmp_path):
    rng = np.random.default_rng(0)
    preds = {7: (rng.random((3, 5, 11)) > 0.5, rng.random(3)),  # 165 bits: not a multiple of 8
             42: (np.zeros((0, 4, 6), dtype=bool), np.zeros(0))}
    path = tmp_path / "float.npz"
    save_predictions(preds, path, "litemedsam on coco_tiny/val")
    back = load_predictions(path, "litemedsam on coco_tiny/val")
    assert sorted(back) == [7, 42]
    for image_id, (masks, scores) in preds.items():
        assert back[image_id][0].dtype == bool
        np.testing.assert_array_equal(back[image_id][0], masks)
        np.testing.assert_array_equal(back[image_id][1], scores)
    assert [p.name for p in tmp_path.iterdir()] == ["float.npz"]  # no temporary left behind


def test_truncated_cache_names_the_file(tmp_path):
    path = tmp_path / "float.npz"
    save_predictions({1: (np.ones((1, 2, 2), dtype=bool), np.ones(1))}, path, "m on d")
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(SamhwError, match="float.npz: not a readable prediction cache"):
        load_predictions(path, "m on d")


def test_cache_from_another_model_is_refused(tmp_path):
    # Same prompts, so the masks' shapes match: only the label can tell the caches apart.
    path = tmp_path / "float.npz"
    save_predictions({1: (np.ones((1, 2, 2), dtype=bool), np.ones(1))}, path, "sam_vit_b on coco_tiny/val")
    with pytest.raises(SamhwError, match="float.npz: prediction cache made by sam_vit_b on coco_tiny/val, "
                                         "not by litemedsam on coco_tiny/val"):
        load_predictions(path, "litemedsam on coco_tiny/val")


def test_cached_predictions_compute_once_then_reuse_unless_told_not_to(tmp_path):
    path, calls = tmp_path / "float.npz", []
    source = val_source("litemedsam", "../shared/data/coco_tiny", 5)
    assert source == "litemedsam on coco_tiny/val[:5]"

    def compute(value):
        calls.append(value)
        return {3: (np.full((1, 2, 2), value), np.ones(1))}

    first = cached_predictions(path, source, lambda: compute(True))
    again = cached_predictions(path, source, lambda: compute(False))
    assert calls == [True] and again[3][0].all() and first[3][0].all()
    fresh = cached_predictions(path, source, lambda: compute(False), reuse=False)   # recomputed, and saved
    assert calls == [True, False] and not fresh[3][0].any()
    assert not load_predictions(path, source)[3][0].any()
    with pytest.raises(SamhwError, match="made by litemedsam on coco_tiny/val\\[:5\\], not by litemedsam on coco_tiny/val$"):
        cached_predictions(path, val_source("litemedsam", "coco_tiny"), lambda: compute(True))
    assert cached_predictions(None, source, lambda: compute(True))[3][0].all() and len(calls) == 3

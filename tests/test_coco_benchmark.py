"""COCO loading, mask metrics and the box-prompted benchmark, checked on the real coco_tiny val split.

The predictors here are synthetic (oracle / empty / box-filled) so the expected scores are known
without any model: if the benchmark mis-pairs prompts and masks, drops crowd handling or mis-scores
detections, the oracle stops scoring a perfect 1.0.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sw.data.coco import load_coco_split, load_detections, resolve_coco_folder
from sw.data.images import list_images, load_rgb
from sw.errors import SamhwError
from sw.eval.benchmark import collect_predictions, run_benchmark
from sw.eval.metrics import coco_mask_ap, encode_rle, mask_iou

COCO_ROOT = Path(__file__).resolve().parents[1].parent / "shared/data/coco_tiny"
VAL_ANN = COCO_ROOT / "annotations/instances_val2017.json"
N_IMAGES = 5

pytestmark = pytest.mark.skipif(not VAL_ANN.is_file(), reason=f"coco_tiny data not found at {COCO_ROOT}")


@pytest.fixture(scope="module")
def split():
    return resolve_coco_folder(COCO_ROOT, "val")


@pytest.fixture(scope="module")
def raw_val():
    return json.loads(VAL_ANN.read_text())


def make_oracle(split, image_ids):
    """Predictor that returns the GT mask whose box is closest to each prompt (it gets no image id)."""
    candidates = [(np.array(inst.box_xyxy), split.gt_mask(inst.ann_id))
                  for i in image_ids for inst in split.instances(i)]

    def predict(image, boxes):
        masks = []
        for box in boxes:
            same_size = [(np.abs(b - box).sum(), m) for b, m in candidates if m.shape == image.shape[:2]]
            masks.append(min(same_size, key=lambda t: t[0])[1])
        return np.stack(masks), np.ones(len(boxes))
    return predict


def empty_predict(image, boxes):
    return np.zeros((len(boxes),) + image.shape[:2], dtype=bool), np.full(len(boxes), 0.5)


def box_predict(image, boxes):
    masks = np.zeros((len(boxes),) + image.shape[:2], dtype=bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, int(np.floor(y0)):int(np.ceil(y1)), int(np.floor(x0)):int(np.ceil(x1))] = True
    return masks, np.full(len(boxes), 0.8)


def first_ids(split):
    return split.image_ids[:N_IMAGES]


def assert_one_line_naming(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message, message


# --- benchmark, GT-box mode ---------------------------------------------------------------------

def test_oracle_scores_perfect(split):
    result = run_benchmark(split, make_oracle(split, first_ids(split)), limit_images=N_IMAGES, progress=False)
    assert result.n_images == N_IMAGES
    assert result.n_instances == sum(len(split.instances(i)) for i in first_ids(split)) > 0
    assert result.miou_gt == pytest.approx(1.0)
    assert result.ap == pytest.approx(1.0) and result.ap50 == pytest.approx(1.0)
    assert result.miou_fp is None
    assert len(result.per_instance) == result.n_instances


def test_empty_masks_score_zero(split):
    result = run_benchmark(split, empty_predict, limit_images=N_IMAGES, progress=False)
    assert result.miou_gt == 0.0
    assert result.ap == 0.0 and result.ap50 == 0.0


def test_box_masks_score_in_between(split):
    result = run_benchmark(split, box_predict, limit_images=N_IMAGES, progress=False)
    assert 0.0 < result.miou_gt < 1.0
    assert 0.0 < result.ap < 1.0
    assert result.ap50 >= result.ap75


def test_scoring_stored_predictions_equals_scoring_the_predictor(split):
    stored = collect_predictions(split, box_predict, limit_images=N_IMAGES, progress=False)
    live = run_benchmark(split, box_predict, limit_images=N_IMAGES, progress=False)
    replayed = run_benchmark(split, stored, limit_images=N_IMAGES, progress=False)
    assert replayed.to_dict() == live.to_dict()


def test_reference_cache_matches_reference_predict(split):
    oracle = make_oracle(split, first_ids(split))
    cached = collect_predictions(split, oracle, limit_images=N_IMAGES, progress=False)
    live = run_benchmark(split, box_predict, reference_predict=oracle, limit_images=N_IMAGES, progress=False)
    reused = run_benchmark(split, box_predict, reference_masks=cached, limit_images=N_IMAGES, progress=False)
    # Against an oracle reference, "IoU vs reference" is exactly "IoU vs GT".
    assert live.miou_fp == pytest.approx(live.miou_gt)
    assert reused.miou_fp == pytest.approx(live.miou_fp)
    assert json.dumps(reused.to_dict())  # report must be JSON-serialisable


def test_crowd_annotations_are_not_prompted(split, raw_val):
    crowd_images = sorted({a["image_id"] for a in raw_val["annotations"] if a["iscrowd"]})
    assert crowd_images, "test data should contain crowd annotations"
    non_crowd = sum(1 for a in raw_val["annotations"] if a["image_id"] in crowd_images and not a["iscrowd"])
    prompted = []

    def counting_predict(image, boxes):
        prompted.append(len(boxes))
        return empty_predict(image, boxes)

    crowd_split = dataclasses.replace(split, image_ids=[i for i in split.image_ids if i in crowd_images])
    result = run_benchmark(crowd_split, counting_predict, progress=False)
    assert sum(prompted) == result.n_instances == non_crowd
    crowd_ids = {a["id"] for a in raw_val["annotations"] if a["iscrowd"]}
    assert not crowd_ids & {r["ann_id"] for r in result.per_instance}


# --- benchmark, detection mode ------------------------------------------------------------------

def write_detections(tmp_path, split, junk_score):
    dets = [{"image_id": i, "category_id": inst.category_id, "score": 0.9,
             "bbox": [inst.box_xyxy[0], inst.box_xyxy[1],
                      inst.box_xyxy[2] - inst.box_xyxy[0], inst.box_xyxy[3] - inst.box_xyxy[1]]}
            for i in first_ids(split) for inst in split.instances(i)]
    junk = {"image_id": first_ids(split)[0], "category_id": dets[0]["category_id"],
            "bbox": [0.0, 0.0, 30.0, 30.0], "score": junk_score}
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets + [junk]))
    return path, len(dets)


def test_detection_mode_filters_junk_and_oracle_is_perfect(split, tmp_path):
    path, n_real = write_detections(tmp_path, split, junk_score=0.01)
    detections = load_detections(path, split, score_threshold=0.05)
    assert sum(len(v) for v in detections.values()) == n_real
    assert all(score >= 0.05 for dets in detections.values() for _, score, _ in dets)

    result = run_benchmark(split, make_oracle(split, first_ids(split)), detections=detections,
                           limit_images=N_IMAGES, progress=False)
    assert result.prompt_mode == "detections"
    assert result.n_instances == n_real
    assert result.ap == pytest.approx(1.0)
    assert result.miou_gt == pytest.approx(1.0)


def test_detection_mode_junk_above_threshold_is_kept(split, tmp_path):
    path, n_real = write_detections(tmp_path, split, junk_score=0.5)
    detections = load_detections(path, split)
    assert sum(len(v) for v in detections.values()) == n_real + 1


# --- metrics ------------------------------------------------------------------------------------

def test_mask_iou_and_rle():
    a = np.zeros((4, 5), dtype=bool)
    b = a.copy()
    assert mask_iou(a, b) == 1.0
    a[0, :4] = True
    b[0, 2:] = True
    assert mask_iou(a, b) == pytest.approx(2 / 5)
    rle = encode_rle(a)
    assert isinstance(rle["counts"], str) and rle["size"] == [4, 5]
    json.dumps(rle)


def test_mask_ap_without_results_is_zero(split):
    assert coco_mask_ap(split, [], first_ids(split)) == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}


# --- error reporting ----------------------------------------------------------------------------

def test_missing_annotation_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(SamhwError) as excinfo:
        load_coco_split(COCO_ROOT / "val2017", missing)
    assert_one_line_naming(excinfo, missing)


def test_malformed_json(tmp_path, split):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SamhwError, match="malformed COCO json") as excinfo:
        load_coco_split(COCO_ROOT / "val2017", bad)
    assert_one_line_naming(excinfo, bad)
    with pytest.raises(SamhwError, match="malformed json") as excinfo:
        load_detections(bad, split)
    assert_one_line_naming(excinfo, bad)


def test_json_missing_annotations(tmp_path, raw_val):
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": raw_val["images"], "categories": raw_val["categories"]}))
    with pytest.raises(SamhwError, match="'annotations'") as excinfo:
        load_coco_split(COCO_ROOT / "val2017", partial)
    assert_one_line_naming(excinfo, partial)


def test_annotation_missing_bbox(tmp_path, raw_val):
    data = json.loads(json.dumps(raw_val))
    del data["annotations"][3]["bbox"]
    path = tmp_path / "nobbox.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SamhwError, match="'bbox'") as excinfo:
        load_coco_split(COCO_ROOT / "val2017", path)
    assert_one_line_naming(excinfo, path)


def test_detection_with_unknown_image(tmp_path, split):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": -7, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}]))
    with pytest.raises(SamhwError, match="-7") as excinfo:
        load_detections(path, split)
    assert_one_line_naming(excinfo, path)


def test_empty_image_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(SamhwError, match="no images found") as excinfo:
        list_images(tmp_path)
    assert_one_line_naming(excinfo, tmp_path)


def test_missing_image_folder(tmp_path, raw_val):
    missing = tmp_path / "gone"
    with pytest.raises(SamhwError, match="does not exist") as excinfo:
        list_images(missing)
    assert_one_line_naming(excinfo, missing)
    with pytest.raises(SamhwError) as excinfo:
        load_coco_split(missing, VAL_ANN)
    assert_one_line_naming(excinfo, missing)


def test_split_with_absent_image_files(tmp_path):
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations/instances_val2017.json").write_text(VAL_ANN.read_text())
    with pytest.raises(SamhwError, match="missing") as excinfo:
        resolve_coco_folder(tmp_path, "val")
    assert_one_line_naming(excinfo, tmp_path / "val2017")


def test_unknown_layout(tmp_path):
    with pytest.raises(SamhwError, match="no COCO 'val' split") as excinfo:
        resolve_coco_folder(tmp_path, "val")
    assert_one_line_naming(excinfo, tmp_path)


def test_corrupt_image(tmp_path):
    corrupt = tmp_path / "x.jpg"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(SamhwError, match="cannot read image") as excinfo:
        load_rgb(corrupt)
    assert_one_line_naming(excinfo, corrupt)


# --- images -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P", "LA"])
def test_load_rgb_converts_to_rgb(tmp_path, mode):
    rng = np.random.default_rng(1)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (7, 9), dtype=np.uint16))
    elif mode == "RGBA":
        img = Image.fromarray(rng.integers(0, 255, (7, 9, 4), dtype=np.uint8), "RGBA")
    else:
        img = Image.fromarray(rng.integers(0, 255, (7, 9), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    img.save(path)
    rgb = load_rgb(path)
    assert rgb.shape == (7, 9, 3) and rgb.dtype == np.uint8
    if mode == "RGBA":
        assert np.array_equal(rgb, np.asarray(img)[:, :, :3])  # alpha dropped, colours untouched
    if mode == "I;16":
        assert rgb.max() > 200  # scaled from 16 bit, not clipped to a white sheet
        assert len(np.unique(rgb)) > 10


def test_list_images_sorted_and_limited(tmp_path, raw_val):
    for name in ["b.PNG", "a.jpg", "c.txt", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in list_images(tmp_path, limit=1)] == ["a.jpg"]
    assert len(list_images(COCO_ROOT / "val2017")) == len(raw_val["images"])


def test_calibration_seed_zero_takes_the_first_images_and_other_seeds_draw_reproducibly():
    from sw.data.calibration import calibration_draw

    ids = list(range(100, 180))
    assert calibration_draw(ids, 32, 0) == ids[:32]
    one, two = calibration_draw(ids, 32, 1), calibration_draw(ids, 32, 2)
    assert one == calibration_draw(ids, 32, 1) and one == sorted(one) and len(set(one)) == 32
    assert one != two and one != ids[:32] and set(one) <= set(ids)
    assert calibration_draw(ids, 500, 7) == ids

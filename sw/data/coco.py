"""COCO-style instance annotations and detector results, validated before pycocotools sees them.

pycocotools assumes well-formed input and fails with a ``KeyError`` or ``AssertionError`` far from the
cause. Every check here exists so that a bad file is reported as a single :class:`SamhwError` line
naming the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from ..errors import SamhwError

# The COCO subset shipped beside the checkout (tests, CI and the benchmarks read it from there).
DEFAULT_COCO_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_tiny"

_IMAGE_KEYS = ("id", "file_name", "height", "width")
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox", "segmentation")
_DETECTION_KEYS = ("image_id", "category_id", "bbox", "score")

Box = tuple[float, float, float, float]
Detection = tuple[Box, float, int]  # (box_xyxy, score, category_id)


@dataclass(frozen=True)
class Instance:
    """One non-crowd annotated object; ``box_xyxy`` is in original image pixels."""

    ann_id: int
    image_id: int
    category_id: int
    box_xyxy: Box


@dataclass
class CocoSplit:
    """A folder of images plus its instance annotation file, already validated.

    ``image_ids`` is sorted by file name so that "the first N images" means the same thing on every
    machine, independent of the order of the JSON file.
    """

    images_dir: Path
    ann_file: Path
    coco: COCO
    image_ids: list[int]
    categories: dict[int, str] = field(default_factory=dict)

    def image_info(self, image_id: int) -> dict:
        """The JSON record of one image (file_name, height, width, ...)."""
        return self.coco.imgs[image_id]

    def image_path(self, image_id: int) -> Path:
        return self.images_dir / self.coco.imgs[image_id]["file_name"]

    def image_size(self, image_id: int) -> tuple[int, int]:
        """(height, width) as annotated; ground-truth masks are rasterised at this size."""
        info = self.coco.imgs[image_id]
        return int(info["height"]), int(info["width"])

    def instances(self, image_id: int) -> list[Instance]:
        """Promptable objects of one image: non-crowd, non-degenerate boxes, sorted by ann id.

        Crowd regions are excluded because COCO evaluation ignores them as ground truth, so
        prompting them would only add predictions that can never count.
        """
        found = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w <= 0 or h <= 0:
                continue
            found.append(Instance(int(ann["id"]), int(image_id), int(ann["category_id"]),
                                  (x, y, x + w, y + h)))
        return sorted(found, key=lambda inst: inst.ann_id)

    def gt_mask(self, ann_id: int) -> np.ndarray:
        """Ground-truth mask of one annotation as a bool ``HxW`` array."""
        with warnings.catch_warnings():
            # pycocotools' Cython decoder trips a NumPy 2 copy-keyword DeprecationWarning on every
            # call; it is harmless and would otherwise flood the benchmark's output.
            warnings.simplefilter("ignore", DeprecationWarning)
            return self.coco.annToMask(self.coco.anns[ann_id]).astype(bool)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise SamhwError(f"{path}: {what} does not exist")
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        label = "COCO json" if what == "annotation file" else "json"
        raise SamhwError(f"{path}: malformed {label}: {exc}") from None
    except OSError as exc:
        raise SamhwError(f"{path}: cannot read {what}: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_bbox(bbox: Any) -> bool:
    return isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(_is_number(v) for v in bbox)


def _require_keys(record: Any, keys: tuple[str, ...], path: Path, label: str) -> None:
    if not isinstance(record, dict):
        raise SamhwError(f"{path}: {label} is not a JSON object")
    missing = [k for k in keys if k not in record]
    if missing:
        raise SamhwError(f"{path}: {label} is missing {', '.join(repr(k) for k in missing)}")


def _validate_coco_dict(data: Any, path: Path) -> None:
    """Check everything pycocotools and the benchmark rely on, so failures name the file."""
    if not isinstance(data, dict):
        raise SamhwError(f"{path}: COCO json must be an object with 'images', 'annotations' and "
                         f"'categories', found {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problem = "is missing" if key not in data else "is not a list"
            raise SamhwError(f"{path}: COCO json {problem} {key!r}")
    image_ids = set()
    for i, img in enumerate(data["images"]):
        _require_keys(img, _IMAGE_KEYS, path, f"images[{i}]")
        image_ids.add(img["id"])
    for i, cat in enumerate(data["categories"]):
        _require_keys(cat, ("id",), path, f"categories[{i}]")
    for i, ann in enumerate(data["annotations"]):
        label = f"annotations[{i}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
        _require_keys(ann, _ANNOTATION_KEYS, path, label)
        if ann["image_id"] not in image_ids:
            raise SamhwError(f"{path}: {label} refers to unknown image_id {ann['image_id']}")
        if not _check_bbox(ann["bbox"]):
            raise SamhwError(f"{path}: {label} has a bad 'bbox' (want [x, y, w, h]): {ann['bbox']}")
        if not isinstance(ann["segmentation"], (list, dict)):
            raise SamhwError(f"{path}: {label} has a bad 'segmentation' (want polygons or RLE)")


def _fill_defaults(data: dict) -> None:
    """COCOeval reads 'area' and 'iscrowd'; many hand-made files omit them, so supply the COCO defaults."""
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])


def _build_coco(data: dict) -> COCO:
    """Index an already-parsed dict; pycocotools prints progress to stdout, which we keep quiet."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def load_coco_split(images_dir: str | Path, ann_file: str | Path) -> CocoSplit:
    """Load and validate an instance annotation file together with its image folder."""
    images_dir, ann_file = Path(images_dir), Path(ann_file)
    data = _read_json(ann_file, "annotation file")
    _validate_coco_dict(data, ann_file)
    if not images_dir.is_dir():
        raise SamhwError(f"{images_dir}: image folder does not exist")
    _fill_defaults(data)
    coco = _build_coco(data)

    missing = [img["file_name"] for img in data["images"] if not (images_dir / img["file_name"]).is_file()]
    if missing:
        raise SamhwError(f"{images_dir}: {len(missing)} image file(s) listed in {ann_file.name} are "
                         f"missing, e.g. {missing[0]}")
    image_ids = sorted(coco.imgs, key=lambda i: (str(coco.imgs[i]["file_name"]), i))
    categories = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
    return CocoSplit(images_dir, ann_file, coco, image_ids, categories)


def resolve_coco_folder(root: str | Path, split: str) -> CocoSplit:
    """Find ``split`` inside a COCO-style root (``val2017/`` + ``annotations/instances_val2017.json``,
    or the year-less ``val/`` + ``annotations/instances_val.json``)."""
    root = Path(root)
    if not root.is_dir():
        raise SamhwError(f"{root}: dataset folder does not exist")
    layouts = [(root / f"{split}2017", root / "annotations" / f"instances_{split}2017.json"),
               (root / split, root / "annotations" / f"instances_{split}.json")]
    for images_dir, ann_file in layouts:
        if images_dir.is_dir() and ann_file.is_file():
            return load_coco_split(images_dir, ann_file)
    raise SamhwError(f"{root}: no COCO '{split}' split found: expected {split}2017/ and "
                     f"annotations/instances_{split}2017.json (or {split}/ and "
                     f"annotations/instances_{split}.json)")


def load_detections(results_json: str | Path, split: CocoSplit,
                    score_threshold: float = 0.05) -> dict[int, list[Detection]]:
    """Read a detector's COCO results file into box prompts per image.

    Keeps detections with ``score >= score_threshold`` (0.05 is the usual COCO detector output
    cut-off) and non-degenerate boxes. Each image's list is sorted by descending score so that
    prompts, and any later top-k truncation, are deterministic. Images without detections are absent.
    """
    path = Path(results_json)
    data = _read_json(path, "detections file")
    if not isinstance(data, list):
        raise SamhwError(f"{path}: detections json must be a list of {{image_id, category_id, bbox, "
                         f"score}}, found {type(data).__name__}")
    by_image: dict[int, list[Detection]] = {}
    for i, det in enumerate(data):
        _require_keys(det, _DETECTION_KEYS, path, f"detection [{i}]")
        if not isinstance(det["image_id"], (int, str)) or det["image_id"] not in split.coco.imgs:
            raise SamhwError(f"{path}: detection [{i}] has image_id {det['image_id']} which is not in "
                             f"{split.ann_file.name}")
        if not isinstance(det["category_id"], int) or det["category_id"] not in split.categories:
            raise SamhwError(f"{path}: detection [{i}] has category_id {det['category_id']} which is "
                             f"not in {split.ann_file.name}")
        if not _check_bbox(det["bbox"]) or not _is_number(det["score"]):
            raise SamhwError(f"{path}: detection [{i}] needs a numeric 'bbox' [x, y, w, h] and 'score'")
        x, y, w, h = (float(v) for v in det["bbox"])
        score = float(det["score"])
        if score < score_threshold or w <= 0 or h <= 0:
            continue
        by_image.setdefault(int(det["image_id"]), []).append(
            ((x, y, x + w, y + h), score, int(det["category_id"])))
    for dets in by_image.values():
        dets.sort(key=lambda d: -d[1])
    return by_image


def val_image_with_box(root: str | Path, index: int) -> tuple[Path, list[float]]:
    """The ``index``-th val image of ``root`` (file-name order) that has a promptable box, and its first
    box (x0, y0, x1, y1 in image pixels): the real image the hardware checks run on."""
    if index < 0:
        raise SamhwError(f"--image-index must be >= 0, got {index}")
    split = resolve_coco_folder(root, "val")
    with_box = [i for i in split.image_ids if split.instances(i)]
    if index >= len(with_box):
        raise SamhwError(f"--image-index {index}: {root} has {len(with_box)} val images with a box")
    image_id = with_box[index]
    return split.image_path(image_id), split.instances(image_id)[0].box_xyxy

"""Save and load a model's benchmark predictions, so the float pass runs once across benchmark rows.

The float model's masks on coco_tiny val take minutes on a CPU and do not change between recipes;
scripts/results_table.py keeps them in an npz (masks bit-packed) when given ``--float-cache``. Entries
are checked against the prompts when used (``run_benchmark`` rejects a shape mismatch), so a cache
made with other prompts fails loudly instead of scoring against the wrong masks.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..atomic_file import atomic_path
from ..errors import SamhwError
from .benchmark import Predictions


def save_predictions(predictions: Predictions, path: Path) -> None:
    arrays = {}
    for image_id, (masks, scores) in predictions.items():
        masks = np.asarray(masks, dtype=bool)
        arrays[f"{image_id}.shape"] = np.asarray(masks.shape, np.int64)
        arrays[f"{image_id}.masks"] = np.packbits(masks.reshape(-1))
        arrays[f"{image_id}.scores"] = np.asarray(scores)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_predictions(path: Path) -> Predictions:
    try:
        with np.load(path) as data:
            ids = sorted({int(key.split(".")[0]) for key in data.files})
            out: Predictions = {}
            for image_id in ids:
                shape = tuple(int(n) for n in data[f"{image_id}.shape"])
                bits = np.unpackbits(data[f"{image_id}.masks"], count=int(np.prod(shape)))
                out[image_id] = (bits.astype(bool).reshape(shape), data[f"{image_id}.scores"])
            return out
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SamhwError(f"{path}: not a readable prediction cache ({exc})") from None

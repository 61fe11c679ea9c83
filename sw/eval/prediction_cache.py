"""Save and load a model's benchmark predictions, so the float pass runs once across benchmark rows.

The float model's masks on coco_tiny val take minutes on a CPU and do not change between recipes;
scripts/results_table.py keeps them in an npz (masks bit-packed) when given ``--float-cache``. Entries
are checked against the prompts when used (``run_benchmark`` rejects a shape mismatch), and the cache
records what made it (model and dataset), because another model's masks have the same shapes; either
mismatch fails loudly instead of scoring against the wrong masks.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic_file import atomic_path
from ..errors import SamhwError
from .benchmark import Predictions


SOURCE_KEY = "source"


def val_split_name(data: str | Path, limit: int | None = None) -> str:
    """The val split of the COCO folder ``data`` (its first ``limit`` images), as results rows name it."""
    return f"{Path(data).name}/val" + (f"[:{limit}]" if limit else "")


def val_source(model_name: str, data: str | Path, limit: int | None = None) -> str:
    """What a cache of ``model_name``'s masks on that split holds."""
    return f"{model_name} on {val_split_name(data, limit)}"


def cached_predictions(path: Path | None, source: str, compute: Callable[[], Predictions],
                       reuse: bool = True) -> Predictions:
    """The predictions saved in ``path`` when it exists and ``reuse`` holds, else ``compute()``, then saved
    there (when a path is given) for the next run."""
    if path is not None and reuse and path.exists():
        return load_predictions(path, source)
    predictions = compute()
    if path is not None:
        save_predictions(predictions, path, source)
    return predictions


def save_predictions(predictions: Predictions, path: Path, source: str) -> None:
    """Write ``predictions`` to ``path``, labelled with ``source`` (what made them)."""
    arrays = {SOURCE_KEY: np.asarray(source)}
    for image_id, (masks, scores) in predictions.items():
        masks = np.asarray(masks, dtype=bool)
        arrays[f"{image_id}.shape"] = np.asarray(masks.shape, np.int64)
        arrays[f"{image_id}.masks"] = np.packbits(masks.reshape(-1))
        arrays[f"{image_id}.scores"] = np.asarray(scores)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_predictions(path: Path, source: str) -> Predictions:
    """The predictions in ``path``, which must have been saved with the same ``source``."""
    try:
        with np.load(path) as data:
            saved = str(data[SOURCE_KEY]) if SOURCE_KEY in data.files else "an unlabelled run"
            if saved != source:
                raise SamhwError(f"{path}: prediction cache made by {saved}, not by {source}")
            ids = sorted({int(key.split(".")[0]) for key in data.files if key != SOURCE_KEY})
            out: Predictions = {}
            for image_id in ids:
                shape = tuple(int(n) for n in data[f"{image_id}.shape"])
                bits = np.unpackbits(data[f"{image_id}.masks"], count=int(np.prod(shape)))
                out[image_id] = (bits.astype(bool).reshape(shape), data[f"{image_id}.scores"])
            return out
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SamhwError(f"{path}: not a readable prediction cache ({exc})") from None

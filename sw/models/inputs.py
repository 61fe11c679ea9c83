"""A real image and box as the integer reference and the accelerator take them: the model's own
preprocessing (torch) turned into float64 numpy arrays, so that sw/ref, hw and sim never see torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def reference_inputs(model_name: str, checkpoint: str | None, path: Path, box_xyxy) -> tuple[np.ndarray, np.ndarray]:
    """The encoder input of the image at ``path`` and the box in input pixels, as float64 arrays."""
    import torch

    from ..data.images import load_rgb
    from .registry import load_model

    model = load_model(model_name, checkpoint)
    with torch.no_grad():
        x, meta = model.preprocess(load_rgb(path))
        box = model.boxes_to_input(np.array([box_xyxy], np.float32), meta)
    return x.double().numpy(), box.double().numpy()

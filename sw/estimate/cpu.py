"""The CPU baseline (torch; the only module of the package that imports it, called from the
``--measure`` step): the float model's image encoder per image and mask decoder (with the prompt
encoder) per box, timed on this machine at a stated torch thread count.

LiteMedSAM runs with its bundled weights on a real COCO val image and its first box; SAM ViT-B is built
from ``segment-anything`` with seeded random weights (``sw.models.sam_vit.build_sam_vit``): only its
shapes matter for the time. Each part runs ``warmup`` times untimed, then ``repeats`` times; the median
is kept, the others are recorded too.
"""

from __future__ import annotations

import platform
import statistics
import time


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure_cpu(model_name: str, image_path, box_xyxy, threads: int, repeats: int = 3, warmup: int = 1) -> dict:
    import numpy as np
    import torch

    from sw.data.images import load_rgb
    from sw.models import load_model
    from sw.models.sam_vit import VARIANTS, build_sam_vit

    torch.set_num_threads(threads)
    if model_name == "litemedsam":
        model, weights = load_model("litemedsam"), "bundled LiteMedSAM weights"
    else:
        model, weights = build_sam_vit(VARIANTS[model_name], model_name, None, seed=0), "random (seed 0): shapes only"
    image = load_rgb(image_path)
    times = {"encoder": [], "decoder": []}
    with torch.no_grad():
        x, meta = model.preprocess(image)
        boxes = model.boxes_to_input(np.array([box_xyxy], np.float32), meta)
        for i in range(warmup + repeats):
            start = time.perf_counter()
            embedding = model.encode(x)
            mid = time.perf_counter()
            model.decode(embedding, boxes)
            end = time.perf_counter()
            if i >= warmup:
                times["encoder"].append(mid - start)
                times["decoder"].append(end - mid)
    return {"model": model_name, "weights": weights, "threads": threads, "torch": torch.__version__,
            "cpu": _cpu_name(), "logical_cpus": __import__("os").cpu_count(), "image": str(image_path),
            "input_size": int(model.input_size), "warmup": warmup, "repeats": repeats,
            "encoder_s": statistics.median(times["encoder"]), "decoder_s": statistics.median(times["decoder"]),
            "runs": times}

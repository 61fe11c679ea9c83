"""Host steps, timed on this machine (numpy only): everything the integer reference runs between the
core's invocations (float stem, LayerNorms, softmax, GELU, residuals, code conversions, the prompt
encoder and the decoder's float heads), as ``sw/ref`` implements them. The core's invocations are
replaced by the recording stand-in of ``hw.compiler.model`` (zeros of the right shape, no arithmetic),
so the measured time is the host's share of one image (``encode_image``) and of one box
(``decode_masks``). TinyViT encoders only (``sw/ref`` runs no ViT encoder whole).
"""

from __future__ import annotations

import os
import statistics
import time

from hw.compiler.model import Recorder, model_inputs
from sw.ref.run import decode_masks, encode_image


def measure_host(bundle, repeats: int = 3) -> dict:
    image, box = model_inputs(bundle)
    runs = {"encoder": [], "decoder": []}
    for _ in range(repeats):
        start = time.perf_counter()
        embedding = encode_image(bundle, image, Recorder())
        mid = time.perf_counter()
        decode_masks(bundle, embedding, box, Recorder())
        runs["encoder"].append(mid - start)
        runs["decoder"].append(time.perf_counter() - mid)
    h = bundle.header
    return {"bundle": f"{h.model} {h.recipe} W{h.weight_bits}A{h.act_bits}", "repeats": repeats,
            "encoder_s": statistics.median(runs["encoder"]), "decoder_s": statistics.median(runs["decoder"]),
            "runs": runs, "implementation": "sw/ref host steps (numpy, float64)",
            "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                            "MKL_NUM_THREADS")}}

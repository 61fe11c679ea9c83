"""Plot one post-GELU activation of LiteMedSAM with uniform, log2 and HLUQ levels over its histogram.

    python scripts/hluq_levels_plot.py [--bits 4] [--layer image_encoder.layers.1.blocks.0.mlp.fc2]

The activation is the input of ``--layer`` (a TinyViT MLP's fc2, i.e. the GELU output) on the first
``--images`` calibration images of coco_tiny train. Uniform levels span the observed min/max; log2
levels are 2^-j below the shifted maximum plus zero (shift by the minimum, as HLUQ does); HLUQ levels
come from its (r, g) search against fc2's float weights. Writes docs/hluq_levels.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sw.data.coco import DEFAULT_COCO_ROOT  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--layer", default="image_encoder.layers.1.blocks.0.mlp.fc2")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--data", default=str(DEFAULT_COCO_ROOT))
    p.add_argument("--out", default=str(ROOT / "docs" / "hluq_levels.png"))
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from sw.data.sources import calibration_items
    from sw.models import load_model
    from sw.quant.forward import run_items
    from sw.quant.hluq import HLUQQuantizer, hluq_values
    from sw.report.levels import plot_levels

    model = load_model("litemedsam")
    items, _ = calibration_items(args.data, args.images)
    layer = model.get_submodule(args.layer)
    quantizer = HLUQQuantizer(args.bits, layer)
    quantizer.observing = True
    seen = []

    def grab(_module, inputs):
        quantizer(inputs[0])
        seen.append(inputs[0].flatten()[:: 97].clone())  # a strided sample keeps the histogram cheap

    handle = layer.register_forward_pre_hook(grab)
    try:
        run_items(model, items, "activations")
    finally:
        handle.remove()
    quantizer.finalize()
    values = torch.cat(seen).numpy()
    lo, hi = float(quantizer.lo), quantizer.range_sum[1] / quantizer.calls
    k = args.bits
    uniform = lo + (hi - lo) * np.arange(2**k) / (2**k - 1)
    log2 = np.concatenate([[lo], lo + (hi - lo) * 2.0 ** -np.arange(2**k - 1)])
    codes = torch.arange(2**k, dtype=torch.float32)
    hluq = hluq_values(codes, quantizer.lo, quantizer.s_log, quantizer.s_uni, k, quantizer.log_levels).numpy()
    r, g = (float(quantizer.s_log) / (hi - lo)), quantizer.log_levels / 2**k
    plot_levels(values, {f"uniform {k}-bit": uniform, f"log2 {k}-bit (shifted by the minimum)": log2,
                         f"HLUQ {k}-bit (r={r:.1f}, g={g:.3g}: {quantizer.log_levels} log codes)": hluq},
                f"LiteMedSAM {args.layer} input (post-GELU), {len(items)} coco_tiny train images", Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Side-by-side overlays of float and quantized masks, so a person can see what quantization changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _blend(image: np.ndarray, masks: np.ndarray, color: tuple[float, float, float]) -> np.ndarray:
    out = image.astype(np.float32) / 255.0
    union = masks.any(0) if len(masks) else np.zeros(image.shape[:2], bool)
    out[union] = 0.45 * out[union] + 0.55 * np.asarray(color)
    return out


def save_overlay(rows: list[dict], path: str | Path, quant_label: str) -> None:
    """``rows``: dicts with ``name``, ``image``, ``boxes``, ``float_masks``, ``quant_masks``, ``ious``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(len(rows), 2, figsize=(9, 3.6 * len(rows)), squeeze=False)
    for row, (ax_f, ax_q) in zip(rows, axes):
        for ax, key, color, title in ((ax_f, "float_masks", (0.1, 0.5, 1.0), "float"),
                                      (ax_q, "quant_masks", (1.0, 0.35, 0.1), quant_label)):
            ax.imshow(_blend(row["image"], row[key], color))
            for x0, y0, x1, y1 in row["boxes"]:
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.5))
            ax.set_axis_off()
            ax.set_title(f"{row['name']}: {title}", fontsize=10)
        ious = ", ".join(f"{v:.3f}" for v in row["ious"])
        ax_q.set_title(f"{row['name']}: {quant_label} (IoU vs float {ious})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)

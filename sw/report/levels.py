"""Plot of an activation histogram with the levels of several quantizers drawn over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_levels(values: np.ndarray, level_sets: dict[str, np.ndarray], title: str, path: Path) -> None:
    """One row per quantizer: the histogram (log counts) of ``values`` with that quantizer's levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(level_sets), 1, figsize=(8, 1.9 * len(level_sets)), sharex=True)
    bins = np.linspace(values.min(), values.max(), 200)
    for ax, (name, levels) in zip(np.atleast_1d(axes), level_sets.items()):
        ax.hist(values, bins=bins, color="0.6", log=True)
        for level in levels:
            ax.axvline(level, color="C3", lw=0.8)
        ax.set_ylabel("count")
        ax.set_title(f"{name}: {len(np.unique(levels))} levels", fontsize=9, loc="left")
    np.atleast_1d(axes)[-1].set_xlabel("activation value")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)

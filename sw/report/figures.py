"""One matplotlib figure, drawn off screen and saved reproducibly (no software stamp in the PNG)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


@contextmanager
def saved_figure(path: Path, figsize: tuple[float, float], dpi: int):
    """Yields the axes of a new figure; on exit lays it out, writes ``path`` and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    try:
        yield ax
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)

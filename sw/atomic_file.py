"""Replace a file only once its new content is complete, so a failed or interrupted write never leaves
a half-written state, cache or report behind (bundles, being folders, do the same in bundle/store.py)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp"):
    """A temporary path beside ``path`` to write to; it replaces ``path`` when the block succeeds and
    is removed when it fails. ``suffix`` is for writers that insist on an extension (numpy's .npz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)

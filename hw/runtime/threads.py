"""The BLAS thread count of this process's numpy, set at run time.

The functional model and the reference compute many small exact matrix products (one per GEMM
instruction: tens of rows by a few hundred reduction terms). With OpenBLAS's default of one thread per
core, each of them wakes every thread; on a machine whose cores are busy with other work that made a
32 x 1280 x 48 product take 25-60 ms instead of 0.14 ms, and a whole-model run 4-5 times slower. The
runtime's commands run with one BLAS thread (``single_blas_thread``). ``OPENBLAS_NUM_THREADS`` does the
same but only before numpy is imported; this finds the OpenBLAS numpy loaded (``/proc/self/maps``) and
calls its ``openblas_set_num_threads``. Results do not depend on the thread count (every product is an
exact integer computation), only the time does.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from pathlib import Path

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")


def _openblas() -> list[tuple[object, object]]:
    """(set, get) function pairs of every OpenBLAS library mapped into this process."""
    import numpy  # noqa: F401  (loads numpy's OpenBLAS)

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and "/" in line})
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                setter = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    getter.restype = ctypes.c_int
                    found.append((setter, getter))
                    break
            else:
                continue
            break
    return found


def set_blas_threads(threads: int) -> list[int]:
    """Set every loaded OpenBLAS to ``threads`` threads; returns the previous counts (empty if none found)."""
    previous = []
    for setter, getter in _openblas():
        previous.append(int(getter()))
        setter(ctypes.c_int(threads))
    return previous


@contextmanager
def single_blas_thread():
    """Run the block with one BLAS thread, then restore the previous count."""
    libs = _openblas()
    previous = [int(get()) for _, get in libs]
    for setter, _ in libs:
        setter(ctypes.c_int(1))
    try:
        yield
    finally:
        for (setter, _), n in zip(libs, previous):
            setter(ctypes.c_int(n))

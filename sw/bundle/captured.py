"""The captured-inputs file beside a bundle: real input codes of its layers on one held-out image.

``sw/export/capture.py`` (torch) writes it while the fake-quant model runs; the co-simulation (numpy)
feeds these codes to the hardware and recomputes the expected outputs with ``sw/ref``. The file is
``<bundle>.inputs.npz``, one uint8 array per key:

    <linear>.input             [rows, C]         first rows of the flattened input codes
    <attention>.q / .k / .v    [heads, N, d]     codes of the first batch element (window / prompt)
    <attention>.probs          [heads, Nq, Nk]   its post-softmax codes
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic_file import atomic_path
from .store import BundleError

SUFFIX = ".inputs.npz"
ATTENTION_PARTS = ("q", "k", "v", "probs")


def captured_inputs_path(bundle_dir: str | Path) -> Path:
    bundle_dir = Path(bundle_dir)
    return bundle_dir.with_name(bundle_dir.name + SUFFIX)


def gemm_input_key(layer: str) -> str:
    return f"{layer}.input"


def attention_key(layer: str, part: str) -> str:
    if part not in ATTENTION_PARTS:
        raise ValueError(f"attention part must be one of {ATTENTION_PARTS}, got '{part}'")
    return f"{layer}.{part}"


@dataclass(frozen=True)
class AttentionInputs:
    """One attention's captured codes, [heads, N, d] (probs [heads, Nq, Nk])."""

    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    probs: np.ndarray


@dataclass(frozen=True)
class CapturedInputs:
    path: Path
    arrays: dict[str, np.ndarray]

    def _get(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise BundleError(f"{self.path}: no captured codes '{key}' (export again with --capture-inputs)")
        return np.asarray(self.arrays[key], np.int64)

    def gemm_input(self, layer: str) -> np.ndarray:
        return self._get(gemm_input_key(layer))

    def attention(self, layer: str) -> AttentionInputs:
        return AttentionInputs(*(self._get(attention_key(layer, part)) for part in ATTENTION_PARTS))


def load_captured_inputs(path: str | Path) -> CapturedInputs:
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no captured inputs ('samhw export --capture-inputs' writes them next to the bundle)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: corrupt captured-inputs file ({str(exc).splitlines()[0]})") from None
    for key, array in arrays.items():
        if array.dtype != np.uint8:
            raise BundleError(f"{path}: '{key}' is {array.dtype}, captured codes are uint8")
    return CapturedInputs(path, arrays)


def save_captured_inputs(arrays: dict[str, np.ndarray], bundle_dir: str | Path) -> Path:
    path = captured_inputs_path(bundle_dir)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path

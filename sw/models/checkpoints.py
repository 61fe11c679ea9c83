"""Loading checkpoints with one-line errors.

torch.load is called with ``weights_only=True`` so a checkpoint can never execute code, and every
failure (missing file, unreadable file, wrong keys or shapes) becomes a :class:`SamhwError` naming
the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import SamhwError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise SamhwError(f"{path}: checkpoint file not found")
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        raise SamhwError(f"{path}: checkpoint checksum mismatch (expected sha256 {expected_sha256[:12]}...)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file; all mean the same to a user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SamhwError(f"{path}: corrupt or unreadable checkpoint ({reason})") from None
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SamhwError(f"{path}: checkpoint does not hold a state dict of tensors")
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, prefix: str = "") -> None:
    """Strictly load ``state`` (keys optionally under ``prefix``) into ``module``."""
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise SamhwError(
            f"{path}: checkpoint does not match the model architecture "
            f"({len(missing)} missing keys, {len(unexpected)} unexpected keys, e.g. '{example}')"
        )
    for key, tensor in state.items():
        if own[key].shape != tensor.shape:
            raise SamhwError(
                f"{path}: checkpoint does not match the model architecture "
                f"('{key}' has shape {tuple(tensor.shape)}, model expects {tuple(own[key].shape)})"
            )
    module.load_state_dict(state, strict=True)

"""Seeded, deterministic torch: every command and verification report starts here."""

from __future__ import annotations

import torch


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

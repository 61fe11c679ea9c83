"""BIG: bimodal integration (PTQ4SAM, methods.md §2.3).

Some key projections produce bimodal outputs: every channel sits in one of two symmetric peaks. With
gamma_j = sign(mean K[:, j]) (zero mean -> +1), flipping output channel j of both the query and the
key projection leaves Q K^T unchanged, and K becomes unimodal, which a per-tensor quantizer handles
far better.

Detection follows the reference: Gaussian KDE (Scott bandwidth) of all elements of the first prompt's
K on a 128-point grid between min and max, peaks with height >= 1 % of the summed density and at
least 32 grid points apart; bimodal means exactly two peaks. The signs use every prompt and token.

Folding is exact where the query enters attention only through Q K^T: the SAM decoder attentions and
TinyViT (its position term is a learned bias table). SAM ViT's decomposed relative position term also
reads q, so its encoder attentions are detected and reported but never folded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from .qmodules import QuantDecoderAttention, QuantSamEncoderAttention, QuantTinyViTAttention


@dataclass(frozen=True)
class BimodalSettings:
    grid_points: int = 128
    peak_height: float = 0.01
    peak_distance: int = 32
    max_kde_samples: int = 1 << 16


def count_peaks(values: np.ndarray, settings: BimodalSettings = BimodalSettings()) -> int:
    """Number of KDE peaks of ``values`` under the reference thresholds."""
    from scipy.signal import find_peaks
    from scipy.stats import gaussian_kde

    values = np.asarray(values, np.float64).ravel()
    if values.size > settings.max_kde_samples:
        # Strided subset: the density of 500k decoder keys is resolved to well within a grid step by
        # 65k samples, and the KDE cost is linear in the sample count.
        values = values[:: -(-values.size // settings.max_kde_samples)]
    if np.ptp(values) == 0:
        return 1
    grid = np.linspace(values.min(), values.max(), settings.grid_points)
    density = gaussian_kde(values)(grid)
    peaks, _ = find_peaks(density, height=settings.peak_height * density.sum(), distance=settings.peak_distance)
    return len(peaks)


def channel_signs(keys: torch.Tensor) -> torch.Tensor:
    """gamma_j = +1 where the channel mean is >= 0, else -1; ``keys`` is [..., channels]."""
    mean = keys.reshape(-1, keys.shape[-1]).double().mean(0)
    return torch.where(mean >= 0, 1.0, -1.0).float()


def _keys_as_channels_last(attn: nn.Module, k: torch.Tensor) -> torch.Tensor:
    """The key quantizer's input as [tokens..., channel], channel = the projection's output row."""
    if isinstance(attn, QuantDecoderAttention):
        return k  # [B, N, internal_dim], before the head split
    if isinstance(attn, QuantTinyViTAttention):
        return k.permute(0, 2, 1, 3).reshape(k.shape[0], k.shape[2], -1)  # [B, heads, N, kd] -> [B, N, heads*kd]
    if isinstance(attn, QuantSamEncoderAttention):
        heads = attn.num_heads
        return k.reshape(-1, heads, k.shape[1], k.shape[2]).permute(0, 2, 1, 3).reshape(-1, k.shape[1], heads * k.shape[2])
    raise TypeError(type(attn).__name__)


def _query_key_rows(attn: nn.Module) -> tuple[nn.Module, torch.Tensor, nn.Module, torch.Tensor] | None:
    """(q linear, q row indices, k linear, k row indices) in channel order, or None if not foldable."""
    if isinstance(attn, QuantDecoderAttention):
        rows = torch.arange(attn.internal_dim)
        return attn.q_proj, rows, attn.k_proj, rows
    if isinstance(attn, QuantTinyViTAttention):
        per_head = 2 * attn.key_dim + attn.d
        base = (torch.arange(attn.num_heads) * per_head)[:, None]
        q_rows = (base + torch.arange(attn.key_dim)).reshape(-1)
        return attn.qkv, q_rows, attn.qkv, q_rows + attn.key_dim
    return None


@torch.no_grad()
def fold_signs(attn: nn.Module, signs: torch.Tensor) -> bool:
    """Multiply the query and key projection rows by ``signs``; False if the module is not foldable."""
    rows = _query_key_rows(attn)
    if rows is None:
        return False
    q_lin, q_rows, k_lin, k_rows = rows
    for lin, idx in ((q_lin, q_rows), (k_lin, k_rows)):
        lin.weight[idx] *= signs[:, None]
        if lin.bias is not None:
            lin.bias[idx] *= signs
    return True


@dataclass
class BigReport:
    module: str
    peaks: int
    bimodal: bool
    folded: bool
    negative_channels: int
    signs: torch.Tensor | None = None  # the folded signs, to replay the fold when a state is loaded


def capture_keys(model: nn.Module, run) -> dict[str, torch.Tensor]:
    """Run ``run()`` once and return every attention's key tensor (channels last)."""
    attentions = {n: m for n, m in model.named_modules()
                  if isinstance(m, (QuantDecoderAttention, QuantTinyViTAttention, QuantSamEncoderAttention))}
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name, attn):
        def hook(module, args):
            captured.setdefault(name, _keys_as_channels_last(attn, args[0].detach()).clone())
        return hook

    handles = [a.k_quantizer.register_forward_pre_hook(hook_for(n, a)) for n, a in attentions.items()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return captured


def apply_big(model: nn.Module, run, scope: str = "detected",
              settings: BimodalSettings = BimodalSettings()) -> list[BigReport]:
    """Detect bimodal keys on one forward (``run``, quantizers off) and fold signs.

    ``scope``: ``"detected"`` folds every foldable bimodal attention, ``"token_to_image"`` only the
    decoder token-to-image attentions (the reference code's choice), ``"none"`` only reports.
    """
    keys = capture_keys(model, run)
    reports = []
    for name, k in keys.items():
        peaks = count_peaks(k[0].numpy(), settings)  # first prompt / first window, as the reference
        bimodal = peaks == 2
        want = bimodal and (scope == "detected" or (scope == "token_to_image" and "token_to_image" in name))
        signs = channel_signs(k)
        folded = want and fold_signs(model.get_submodule(name), signs)
        reports.append(BigReport(name, peaks, bimodal, folded, int((signs < 0).sum()) if folded else 0,
                                 signs if folded else None))
    return reports

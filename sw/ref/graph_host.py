"""Float host operations of the whole-model run, in float64 numpy, each matching its torch module.

These are the steps that stay off the accelerator (normalizations, activations, the float stem and the
decoder heads, TinyViT's window bookkeeping); they take and return real values, never codes.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """nn.LayerNorm over the last axis (biased variance, as torch)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * weight + bias


def layer_norm_2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """SAM's LayerNorm2d: normalizes the channels (axis 1) of [B, C, H, W]."""
    mean = x.mean(axis=1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=1, keepdims=True)
    return weight[:, None, None] * (centred / np.sqrt(var + eps)) + bias[:, None, None]


def gelu(x: np.ndarray) -> np.ndarray:
    """nn.GELU's default exact form x * Phi(x) (the tanh approximation differs by up to ~1e-3); the
    normal CDF in one call is 3x faster than 0.5 * (1 + erf(x / sqrt 2)) on the stem's 16M values."""
    return x * ndtr(x)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = x @ weight.T
    return y if bias is None else y + bias


def mlp(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """SAM's MLP head: ReLU after every linear but the last."""
    for i, (weight, bias) in enumerate(layers):
        x = linear(x, weight, bias)
        if i < len(layers) - 1:
            x = relu(x)
    return x


def _patches(x: np.ndarray, kh: int, kw: int, stride: int) -> tuple[np.ndarray, int, int]:
    """[B, C, kh, kw, Ho, Wo] views of an already padded input."""
    _, _, h, w = x.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    rows = [np.stack([x[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] for j in range(kw)], 2)
            for i in range(kh)]
    return np.stack(rows, 2), ho, wo


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int, padding: int,
           groups: int) -> np.ndarray:
    """nn.Conv2d on [B, C, H, W] with weight [O, C/groups, kh, kw]."""
    o, cg, kh, kw = weight.shape
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    b, c, h, w = x.shape
    if kh == kw == 1 and groups == 1:
        xs = x[:, :, ::stride, ::stride]
        out = np.matmul(weight.reshape(o, c), xs.reshape(b, c, -1)).reshape(b, o, *xs.shape[2:])
    elif groups == c == o and cg == 1:  # depthwise: one shifted multiply-add per tap, no patch copy
        ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
        out = np.zeros((b, o, ho, wo))
        for i in range(kh):
            for j in range(kw):
                out += x[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] * weight[:, 0, i, j][None, :, None, None]
    else:
        patches, ho, wo = _patches(x, kh, kw, stride)
        og = o // groups
        outs = []
        for g in range(groups):
            p = patches[:, g * cg:(g + 1) * cg].transpose(0, 4, 5, 1, 2, 3).reshape(b, ho * wo, cg * kh * kw)
            outs.append(p @ weight[g * og:(g + 1) * og].reshape(og, -1).T)
        out = np.concatenate(outs, axis=-1).transpose(0, 2, 1).reshape(b, o, ho, wo)
    return out if bias is None else out + bias[None, :, None, None]


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: int) -> np.ndarray:
    """nn.ConvTranspose2d with kernel = stride and no padding (SAM's upscaling): every input pixel
    writes its own stride x stride output tile. weight [C, O, k, k]."""
    b, _, h, w = x.shape
    _, o, kh, kw = weight.shape
    if kh != stride or kw != stride:
        raise ValueError(f"transposed conv with kernel {kh}x{kw} and stride {stride} is not supported")
    tiles = np.tensordot(x, weight, axes=([1], [0]))  # [B, H, W, O, k, k]
    out = tiles.transpose(0, 3, 1, 4, 2, 5).reshape(b, o, h * kh, w * kw)
    return out if bias is None else out + bias[None, :, None, None]


def window_partition(x: np.ndarray, window: int) -> tuple[np.ndarray, tuple[int, int]]:
    """[B, H, W, C] -> windows [B * nH * nW, window^2, C] and the padded size, in TinyViT's order.

    TinyViT pads bottom/right with zeros *before* the attention's LayerNorm, so padded tokens enter
    every window's keys as the norm's bias: they must be real zeros here too, not masked out."""
    b, h, w, c = x.shape
    pad_b, pad_r = (window - h % window) % window, (window - w % window) % window
    if pad_b or pad_r:
        x = np.pad(x, ((0, 0), (0, pad_b), (0, pad_r), (0, 0)))
    ph, pw = h + pad_b, w + pad_r
    nh, nw = ph // window, pw // window
    windows = x.reshape(b, nh, window, nw, window, c).transpose(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, window * window, c)
    return windows, (ph, pw)


def window_unpartition(windows: np.ndarray, window: int, batch: int, padded: tuple[int, int],
                       size: tuple[int, int]) -> np.ndarray:
    """Inverse of ``window_partition``: [B, H, W, C] with the padding cropped."""
    ph, pw = padded
    c = windows.shape[-1]
    x = windows.reshape(batch, ph // window, pw // window, window, window, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, ph, pw, c)[:, :size[0], :size[1]]

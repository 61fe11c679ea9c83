"""From bundle layers (``sw.bundle``) to engine parameters and engine operands.

Three operations map onto the one engine (``config`` module docstring):

    linear   x = input codes [N, C], w = weight codes [O, C], z_w and bias_acc per output, requantized
    scores   QK^T of one head: x = q codes [Nq, d], w = k codes [Nk, d], z_w = z_k, bias 0, raw output
    values   A.V of one head: x = AGQ probability codes [Nq, Nk], w = V^T [d, Nk], requantized

The engine's widths come only from the layer's parameters and shapes (hw.widths), never from the
operand values, so one generated design accepts every input of that shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sw.bundle import AttentionLayer, CagCodes, HluqCodes, Layer, LinearLayer, UniformCodes

from ..widths import MacWidths, attention_widths, gemm_widths, requant_widths
from .config import EngineConfig

OPERATIONS = ("linear", "scores", "values")


@dataclass
class Operands:
    """Everything the engine's memories and registers hold for one run (integer numpy arrays)."""

    x: np.ndarray                      # [N, C] activation / query / probability codes
    w: np.ndarray                      # [O, C] weight / key codes, or V^T value codes
    zero_w: np.ndarray | None = None   # [O] weight zero point (MAC / HLUQ)
    bias: np.ndarray | None = None     # [O] bias_acc (MAC / HLUQ)
    groups: np.ndarray | None = None   # [C] CAG channel groups
    requant: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # [O] multiplier, shift, zero point
    registers: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])


def _pes(pes: tuple[int, int]) -> tuple[int, int]:
    rows, cols = (int(p) for p in pes)
    if rows < 1 or cols < 1:
        raise ValueError(f"PE array must be at least 1x1, got {rows}x{cols}")
    return rows, cols


def operation_of(layer: Layer, op: str | None) -> str:
    if isinstance(layer, LinearLayer):
        if op not in (None, "linear"):
            raise ValueError(f"layer '{layer.name}' is linear; --op {op} needs an attention layer")
        return "linear"
    if isinstance(layer, AttentionLayer):
        if op not in ("scores", "values"):
            raise ValueError(f"layer '{layer.name}' is an attention layer: choose --op scores (QK^T) or values (A.V)")
        return op
    raise ValueError(f"layer '{layer.name}' is a {layer.TAG} layer; the engine runs linear and attention layers")


def engine_config(layer: Layer, op: str | None = None, pes=(4, 4), max_rows: int = 64, keys: int | None = None,
                  dim: int | None = None) -> EngineConfig:
    """Engine for ``layer`` (``op``: linear, scores or values). Attention shapes: ``keys`` defaults to
    the layer's max_keys, ``dim`` to its per-head width; ``max_rows`` is the query count for them."""
    op = operation_of(layer, op)
    rows, cols = _pes(pes)
    extra = {"layer": layer.name, "operation": op}
    if op == "linear":
        widths = gemm_widths(layer)
        kind = "hluq" if isinstance(layer.input, HluqCodes) else "mac"
        return EngineConfig(kind, widths, requant_widths(layer, widths.acc_bits), rows, cols, max_rows,
                            layer.in_features, layer.out_features, name=f"{kind}_engine", extra=extra)
    keys = int(keys if keys is not None else layer.max_keys)
    if op == "scores":
        dim = int(dim if dim is not None else layer.key_dim)
        widths = MacWidths(layer.q.act_bits, layer.k.act_bits, dim, 1, 1, 1)
        return EngineConfig("mac", widths, None, rows, cols, max_rows, dim, keys, name="scores_engine", extra=extra)
    dim = int(dim if dim is not None else layer.value_dim)
    widths = attention_widths(layer, keys)
    return EngineConfig("agq", widths, requant_widths(layer, widths.acc_bits), rows, cols, max_rows, keys, dim,
                        name="values_engine", extra=extra)


def linear_operands(layer: LinearLayer, codes: np.ndarray) -> Operands:
    fmt = layer.input
    regs = {f"multiplier{g}": int(v) for g, v in enumerate(layer.group_multiplier)}
    groups = None
    if isinstance(fmt, CagCodes):
        regs.update({f"zero_point{g}": int(z) for g, z in enumerate(fmt.group_zero_point)})
        groups = np.asarray(fmt.channel_group, np.int64)
    elif isinstance(fmt, UniformCodes):
        regs["zero_point0"] = fmt.zero_point
    out = layer.output
    return Operands(np.asarray(codes, np.int64), np.asarray(layer.weights.codes, np.int64),
                    np.asarray(layer.weights.zero_point, np.int64), np.asarray(layer.bias_acc, np.int64),
                    groups, (out.multiplier, out.shift, out.zero_point), regs)


def scores_operands(layer: AttentionLayer, q_codes: np.ndarray, k_codes: np.ndarray) -> Operands:
    """One head: q [Nq, d], k [Nk, d]."""
    nk = k_codes.shape[0]
    return Operands(np.asarray(q_codes, np.int64), np.asarray(k_codes, np.int64),
                    np.full(nk, layer.k.zero_point), np.zeros(nk, np.int64), None, None,
                    {"zero_point0": layer.q.zero_point, "multiplier0": 1})


def values_operands(layer: AttentionLayer, prob_codes: np.ndarray, v_codes: np.ndarray) -> Operands:
    """One head: probability codes [Nq, Nk], value codes [Nk, d]."""
    out = layer.output
    d = v_codes.shape[1]
    rq = tuple(np.full(d, int(a[0])) for a in (out.multiplier, out.shift, out.zero_point))
    return Operands(np.asarray(prob_codes, np.int64), np.asarray(v_codes, np.int64).T.copy(), None, None, None, rq,
                    {"value_zero_point": layer.v.zero_point})

"""Bundle layer invocations -> tiled-GEMM specs, with the bundle's integer arithmetic mapped exactly
(sw/ref/layers.py, sw/ref/kernels.py) and every limit of the core checked first.

    linear / 1x1 conv   MAC segment(s) over the input channels: uniform (one, m_x = group_multiplier[0]),
                        CAG (one per group, channels in ``permutation`` order, the group's zero point and
                        multiplier), HLUQ (HLUQ mode, m_x = group_multiplier[0] for the log path,
                        m_y = group_multiplier[1] for the uniform path); bias_acc in the constant slots
    conv2d              one MAC segment over (channel, tap), m_x = group_multiplier[0] (``conv``)
    QK^T (scores)       MAC with the query zero point, keys as column operand (key zero point in the
                        slots), raw outputs as wide as the worst-case score needs
    A.V (values)        AGQ: one segment per residue pair (tau = 4: two passes), m_x/m_y = lut entries, the PE
                        sums bounded by the softmax's row sum (``softmax_row_bound``); uniform softmax: MAC
                        with its zero point; values as column operand

Requantization constants come per column from the layer's output record. Refusals are one line naming
the layer and the limit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from hw.core.config import LANE_ACC_BITS, CoreConfig
from hw.core.isa import ColumnSlot, Mode, Segment
from sw.bundle import (AgqCodes, AttentionLayer, CagCodes, ConvLayer, GemmLayer, HluqCodes, HostOutput, LinearLayer,
                       UniformCodes)
from sw.ref.log_softmax import EXP_BITS, FRAC_BITS, LOG_BITS

from .conv import ConvSpec, conv_output_size, tap_weights
from .errors import CompileError
from .plan import Arith, code_element_bits
from .rows import RowsSpec, TensorView

MULTIPLIER_BITS = 32        # Segment.m_x / m_y: the lanes' multiplier operand


def _code_max(bits: int) -> int:
    return (1 << bits) - 1


def _uniform_max(bits: int, zero_point: int) -> int:
    """Largest |code - zero_point| over the code range."""
    return max(zero_point, _code_max(bits) - zero_point)


def check_codes(where: str, what: str, bits: int, limit: int, field: str) -> None:
    if bits > limit:
        raise CompileError(f"{where}: {what} are {bits}-bit codes, the core stores {limit} ({field})")


def check_format(where: str, config: CoreConfig, fmt: str) -> None:
    if fmt not in config.formats:
        raise CompileError(f"{where}: {fmt} inputs, which this core does not include (formats: "
                           f"{', '.join(config.formats)})")


def check_multipliers(where: str, what: str, values) -> None:
    for v in values:
        if int(v) >= 1 << MULTIPLIER_BITS:
            raise CompileError(f"{where}: {what} {int(v)} needs {int(v).bit_length()} bits, the lanes multiply by "
                               f"{MULTIPLIER_BITS}")


def check_segments(where: str, config: CoreConfig, n: int, what: str) -> None:
    if n > config.max_segments:
        raise CompileError(f"{where}: {n} {what}, the core combines at most {config.max_segments} segments "
                           f"(max_segments)")


def check_shift(where: str, config: CoreConfig, shift: int, what: str) -> None:
    if shift > config.max_shift:
        raise CompileError(f"{where}: {what} shifts by up to {shift}, the core's PEs by {config.max_shift} (max_shift)")


def check_pe(where: str, config: CoreConfig, bound: int, what: str) -> None:
    if bound >= 1 << (config.pe_acc_bits - 1):
        raise CompileError(f"{where}: {what} can reach {bound} ({bound.bit_length() + 1} signed bits), the PE "
                           f"accumulators hold {config.pe_acc_bits} (pe_acc_bits)")


def softmax_row_bound(sm: AgqCodes, keys: int) -> int:
    """Largest sum over one row's keys of 2^(Q - code div tau) when the codes are a softmax row's, as
    the host step (``sw.ref.host.agq_encode``) or the integer unit (``sw.ref.log_softmax``, default
    widths) writes them; an A.V sum is at most this times the largest |v - zero point|.

    Each code is at least tau x - 1/2 for x = -log2(p / scale) (rounding; a code clamped to 0 or to
    the zero code only lowers the term), so 2^(-code / tau) <= 2^(1 / 2tau) p / scale, and
    2^(-(code div tau)) <= 2^((tau - 1) / tau) 2^(-code / tau). The probabilities sum to 1 on the host;
    the integer unit's p_j = e_j / sum, with each e_j at most 1.5 below 2^E 2^-d_j (its EXP rounding and
    shift) and sum >= 2^E, and its row logarithm at most log2(1 + 2^-G) + 2^-F below log2(sum) (the
    mantissa's truncation, the LOG and OFFSET rounding): the factor 2^delta (1 + 1.5 keys / 2^E).
    So the sum is at most 2^(Q + 1 - 1/(2 tau) + delta) (1 + 1.5 keys / 2^E) / scale, whatever the
    keys' count; the keys' own bound, keys x 2^Q, can be the smaller."""
    delta = math.log2(1 + 2.0**-LOG_BITS) + 2.0**-FRAC_BITS
    by_softmax = 2.0 ** (sm.max_shift + 1 - 1 / (2 * sm.tau) + delta) * (1 + 1.5 * keys / 2**EXP_BITS) / sm.scale
    return min(keys << sm.max_shift, math.ceil(by_softmax * (1 + 1e-9)))


def check_lane(where: str, bound: int) -> None:
    if bound >= 1 << (LANE_ACC_BITS - 1):
        raise CompileError(f"{where}: the combined accumulator can reach {bound}, the lanes hold {LANE_ACC_BITS} "
                           f"signed bits")


def _output(layer, where: str) -> tuple[int, int, int, bool]:
    """(element bits, q_min, q_max, signed) of a layer's requantized output."""
    out = layer.output
    if isinstance(out, HostOutput):
        bits = next((b for b in (16, 32) if out.host_bits <= b), None)
        if bits is None:
            raise CompileError(f"{where}: host codes of {out.host_bits} bits, the core writes at most 32")
        return bits, out.q_min, out.q_max, True
    return code_element_bits(out.act_bits), out.q_min, out.q_max, False


def _column_slots(layer: GemmLayer, cols: int, zero_points: np.ndarray) -> list[ColumnSlot]:
    out = layer.output
    o = layer.out_channels
    slots = [ColumnSlot(zero_point=int(zero_points[i]), bias=int(layer.bias_acc[i]), multiplier=int(out.multiplier[i]),
                        shift=int(out.shift[i]), out_zero_point=int(out.zero_point[i])) for i in range(o)]
    return slots + [ColumnSlot(0, 0, 0, 0, 0)] * (-o % cols)


def _gemm_bounds(where: str, config: CoreConfig, layer: GemmLayer, w: np.ndarray, segments, mode: int,
                 row_max: list[tuple[int, int]]) -> None:
    """PE and lane worst cases of a GEMM layer over its actual signed weights ``w`` [J, O]: segment s
    adds at most row_max[s] = (max X row term, max Y row term) times sum |w| over its range."""
    lane = np.abs(layer.bias_acc).astype(object)
    for seg, (x_max, y_max) in zip(segments, row_max):
        col_sum = np.abs(w[seg.j_start:seg.j_start + seg.j_len]).sum(0).astype(object)
        x_bound, y_bound = col_sum * x_max, col_sum * y_max
        check_pe(where, config, int(x_bound.max()), "a PE sum")
        check_pe(where, config, int(y_bound.max()), "a PE sum")
        lane = lane + x_bound * seg.m_x + (y_bound * seg.m_y if mode == Mode.HLUQ else 0)
    check_lane(where, int(lane.max()))


def _gemm_arith(where: str, config: CoreConfig, layer: GemmLayer, order: np.ndarray):
    """(Arith, row pad codes, row_max per segment) of a linear or conv layer's input format."""
    fmt = layer.input
    gm = [int(v) for v in layer.group_multiplier]
    check_multipliers(where, "group multiplier", gm)
    check_codes(where, "inputs", fmt.act_bits, config.act_bits, "act_bits")
    bits, q_min, q_max, _ = _output(layer, where)
    c = len(order)
    if isinstance(fmt, UniformCodes):
        seg = Segment(j_start=0, j_len=c, zero_point=fmt.zero_point, residue_pass=0, m_x=gm[0], m_y=0)
        arith = Arith.of(Mode.MAC, 0, bits, (seg,), q_min, q_max)
        return arith, np.full(c, fmt.zero_point), [(_uniform_max(fmt.act_bits, fmt.zero_point), 0)]
    if isinstance(fmt, CagCodes):
        check_format(where, config, "cag")
        groups = fmt.channel_group[order]
        starts = [0] + [i for i in range(1, c) if groups[i] != groups[i - 1]]
        check_segments(where, config, len(starts), "channel-group runs")
        segments, row_max = [], []
        for lo, hi in zip(starts, starts[1:] + [c]):
            g = int(groups[lo])
            z = int(fmt.group_zero_point[g])
            segments.append(Segment(j_start=lo, j_len=hi - lo, zero_point=z, residue_pass=0, m_x=gm[g], m_y=0))
            row_max.append((_uniform_max(fmt.act_bits, z), 0))
        arith = Arith.of(Mode.MAC, 0, bits, tuple(segments), q_min, q_max)
        return arith, fmt.group_zero_point[groups], row_max
    if isinstance(fmt, HluqCodes):
        check_format(where, config, "hluq")
        levels = fmt.log_levels
        check_shift(where, config, levels - 1, "HLUQ's log path")
        log_max, uniform_max = 1 << (levels - 1), max(0, _code_max(fmt.act_bits) - levels)
        if config.y_takes(levels - 1):
            seg = Segment(j_start=0, j_len=c, zero_point=0, residue_pass=0, m_x=gm[0], m_y=gm[1])
            arith = Arith.of(Mode.HLUQ, 0, bits, (seg,), q_min, q_max, log_levels=levels, uses_y=1)
            return arith, np.zeros(c, np.int64), [(log_max, uniform_max)]
        # no Y in the PEs (or shifts past y_max_shift): the log sum, then the uniform sum, each a segment in X
        check_segments(where, config, 2, "HLUQ's two sums (in X alone)")
        segments = tuple(Segment(j_start=0, j_len=c, zero_point=0, residue_pass=0, m_x=gm[i], m_y=0, y_terms=i)
                         for i in (0, 1))
        arith = Arith.of(Mode.HLUQ, 0, bits, segments, q_min, q_max, log_levels=levels, uses_y=0)
        return arith, np.zeros(c, np.int64), [(log_max, 0), (uniform_max, 0)]
    raise CompileError(f"{where}: unknown input format {type(fmt).__name__}")


def _check_weights(where: str, config: CoreConfig, layer: GemmLayer) -> None:
    check_codes(where, "weights", layer.weights.weight_bits, config.weight_bits, "weight_bits")


def _looked_up(where: str, config: CoreConfig, layer: GemmLayer, arith: Arith, lookup) -> tuple[Arith, bool]:
    """(arith, signed output): the host codes, or with ``lookup`` (an ``invocation.OutputLookup`` the
    core holds) the next layer's codes."""
    if lookup is None:
        return arith, isinstance(layer.output, HostOutput)
    if not isinstance(layer.output, HostOutput) or len(lookup.steps) > config.lookup_steps:
        raise CompileError(f"{where}: an output lookup of {len(lookup.steps)} steps on "
                           f"{layer.output.TAG} outputs (the core holds {config.lookup_steps} steps)")
    return arith.looked_up(lookup.code_bits, lookup.base, lookup.steps), False


def lower_linear(config: CoreConfig, layer: LinearLayer, shape: tuple, where: str, lookup=None) -> RowsSpec:
    _check_weights(where, config, layer)
    c, o = layer.in_features, layer.out_features
    if not shape or shape[-1] != c:
        raise CompileError(f"{where}: input of shape {list(shape)} does not end in the layer's {c} inputs")
    order = layer.input.permutation if isinstance(layer.input, CagCodes) else np.arange(c)
    arith, row_pad, row_max = _gemm_arith(where, config, layer, order)
    arith, signed = _looked_up(where, config, layer, arith, lookup)
    codes = layer.weights.codes[:, order].astype(np.int64)                  # [O, J]
    zp = layer.weights.zero_point.astype(np.int64)
    _gemm_bounds(where, config, layer, (codes - zp[:, None]).T, arith.segments, arith.loops.mode, row_max)
    n = int(np.prod(shape[:-1], dtype=np.int64))
    return _gemm_spec(config, layer, where, arith, row_pad, codes.T,
                      TensorView("input", tuple(shape), tuple(range(len(shape))), (1, n, c)),
                      TensorView("output", tuple(shape[:-1]) + (o,), tuple(range(len(shape))), (1, n, o)), signed,
                      channel_order=order if isinstance(layer.input, CagCodes) else None)


def _gemm_spec(config, layer, where, arith, row_pad, weights, rows_in, out, signed, channel_order=None) -> RowsSpec:
    K = config.cols
    o = layer.out_channels
    zp = layer.weights.zero_point.astype(np.int64)
    weight_pad = np.zeros(-(-o // K) * K, np.int64)
    weight_pad[:o] = zp
    return RowsSpec(where=where, arith=arith, rows_in=rows_in, row_pad=np.asarray(row_pad, np.int64),
                    row_code_bits=layer.input.act_bits, out=out, out_signed=signed,
                    slots=_column_slots(layer, K, zp), shared_slots=False, weights=weights, weight_pad=weight_pad,
                    channel_order=channel_order)


def is_pointwise(layer: ConvLayer) -> bool:
    """A 1x1 conv without stride, padding or groups: a linear layer over the pixels."""
    return layer.kernel_size == (1, 1) and layer.stride == 1 and layer.padding == 0 and layer.groups == 1


def lower_conv(config: CoreConfig, layer: ConvLayer, shape: tuple, where: str, lookup=None) -> RowsSpec | ConvSpec:
    _check_weights(where, config, layer)
    if len(shape) != 4 or shape[1] != layer.in_channels:
        raise CompileError(f"{where}: input of shape {list(shape)} is not [B, {layer.in_channels}, H, W]")
    zp = layer.weights.zero_point.astype(np.int64)
    b, c, h, w = shape
    if is_pointwise(layer):
        arith, row_pad, row_max = _gemm_arith(where, config, layer, np.arange(c))
        arith, signed = _looked_up(where, config, layer, arith, lookup)
        codes = layer.weights.codes[:, :, 0, 0].astype(np.int64)
        _gemm_bounds(where, config, layer, (codes - zp[:, None]).T, arith.segments, arith.loops.mode, row_max)
        o = layer.out_channels
        return _gemm_spec(config, layer, where, arith, row_pad, codes.T,
                          TensorView("input", tuple(shape), (0, 2, 3, 1), (1, b * h * w, c)),
                          TensorView("output", (b, o, h, w), (0, 2, 3, 1), (1, b * h * w, o)), signed)
    kh, kw = layer.kernel_size
    ho, wo = conv_output_size(h, w, kh, kw, layer.stride, layer.padding)
    if ho < 1 or wo < 1:
        raise CompileError(f"{where}: input of shape {list(shape)} is smaller than the {kh}x{kw} kernel")
    arith, _, row_max = _gemm_arith(where, config, layer, np.arange(c))
    arith, signed = _looked_up(where, config, layer, arith, lookup)
    spec = ConvSpec(where=where, arith=arith, shape=tuple(shape), code_bits=layer.input.act_bits,
                    zero_point=layer.input.zero_point, weights=layer.weights.codes, weight_zero=zp,
                    groups=layer.groups, stride=layer.stride, padding=layer.padding,
                    slots=_column_slots(layer, config.cols, zp), out_signed=signed)
    # the reduction is (channel, tap) rather than the channels _gemm_arith saw
    taps = tap_weights(spec, config.cols) - zp[None, :]
    seg = dataclasses.replace(arith.segments[0], j_len=taps.shape[0])
    spec = dataclasses.replace(spec, arith=dataclasses.replace(arith, segments=(seg,)))
    _gemm_bounds(where, config, layer, taps, spec.arith.segments, Mode.MAC, row_max)
    return spec


def _items(where: str, a: tuple, b: tuple, names: tuple[str, str], tails: tuple[tuple, tuple]) -> int:
    """Batch items (windows x heads) shared by two attention operands of shapes [..., x, y]."""
    if len(a) < 2 or len(b) < 2 or tuple(a[:-2]) != tuple(b[:-2]):
        raise CompileError(f"{where}: {names[0]} {list(a)} and {names[1]} {list(b)} do not share their leading axes")
    for name, shape, tail in zip(names, (a, b), tails):
        if any(want is not None and got != want for got, want in zip(shape[-2:], tail)):
            raise CompileError(f"{where}: {name} of shape {list(shape)} does not end in "
                               f"{['*' if t is None else t for t in tail]}")
    return int(np.prod(a[:-2], dtype=np.int64))


def _swap_last(ndim: int) -> tuple:
    return tuple(range(ndim - 2)) + (ndim - 1, ndim - 2)


def lower_scores(config: CoreConfig, layer: AttentionLayer, q_shape: tuple, k_shape: tuple, where: str) -> RowsSpec:
    q, k = layer.q, layer.k
    check_codes(where, "queries", q.act_bits, config.act_bits, "act_bits")
    check_codes(where, "keys", k.act_bits, config.weight_bits, "weight_bits")
    items = _items(where, q_shape, k_shape, ("q", "k"), ((None, layer.key_dim), (None, layer.key_dim)))
    nq, nk, d = q_shape[-2], k_shape[-2], layer.key_dim
    bound = d * _uniform_max(q.act_bits, q.zero_point) * _uniform_max(k.act_bits, k.zero_point)
    check_pe(where, config, bound, "a score")
    bits = next((e for e in (8, 16, 32) if bound < 1 << (e - 1)), None)
    if bits is None:
        raise CompileError(f"{where}: scores can reach {bound}, the core writes at most 32-bit elements")
    arith = Arith.of(Mode.MAC, 1, bits, (Segment(0, d, q.zero_point, 0, 1, 0),))
    n_pad = -(-nk // config.cols) * config.cols
    return RowsSpec(where=where, arith=arith,
                    rows_in=TensorView("q", tuple(q_shape), tuple(range(len(q_shape))), (items, nq, d)),
                    row_pad=np.full(d, q.zero_point), row_code_bits=q.act_bits,
                    out=TensorView("scores", tuple(q_shape[:-1]) + (nk,), tuple(range(len(q_shape))),
                                   (items, nq, nk)),
                    out_signed=True, slots=[ColumnSlot(k.zero_point, 0, 0, 0, 0)] * config.cols, shared_slots=True,
                    weight_pad=np.full(n_pad, k.zero_point),
                    columns_in=TensorView("k", tuple(k_shape), _swap_last(len(k_shape)), (items, d, nk)),
                    column_code_bits=k.act_bits)


def lower_values(config: CoreConfig, layer: AttentionLayer, p_shape: tuple, v_shape: tuple, where: str) -> RowsSpec:
    sm, v, out = layer.softmax, layer.v, layer.output
    check_codes(where, "post-softmax codes", sm.act_bits, config.act_bits, "act_bits")
    check_codes(where, "values", v.act_bits, config.weight_bits, "weight_bits")
    nk = p_shape[-1] if p_shape else 0
    items = _items(where, p_shape, v_shape, ("probabilities", "v"), ((None, None), (nk, layer.value_dim)))
    nq, dv = p_shape[-2], layer.value_dim
    v_max = _uniform_max(v.act_bits, v.zero_point)
    if isinstance(sm, AgqCodes):
        check_format(where, config, "agq")
        check_shift(where, config, sm.max_shift, "AGQ")
        lut = [int(x) for x in sm.lut]
        check_multipliers(where, "AGQ LUT entry", lut)
        use_y = config.y_takes(sm.max_shift)
        if use_y:                      # residues 2p and 2p + 1 in X and Y of pass p
            passes = [(0, 0, 1)] if sm.tau <= 2 else [(0, 0, 1), (1, 2, 3)]
            segments = tuple(Segment(0, nk, 0, p, lut[a], lut[b] if b < sm.tau else 0) for p, a, b in passes)
        else:                          # each residue a segment of its own, in X
            segments = tuple(Segment(0, nk, 0, r >> 1, lut[r], 0, r & 1) for r in range(sm.tau))
        check_segments(where, config, len(segments), "AGQ residue passes")
        arith = Arith.of(Mode.AGQ, 0, code_element_bits(out.act_bits), segments, out.q_min, out.q_max,
                         tau_log2=sm.tau.bit_length() - 1, max_shift=sm.max_shift, zero_code=sm.zero_code,
                         uses_y=int(sm.tau > 1 and use_y))
        pe = softmax_row_bound(sm, nk) * v_max      # the probabilities come from the softmax step
        lane = nk * max(lut) * (1 << sm.max_shift) * v_max
        pad = sm.zero_code
    else:
        pe = lane = nk * _uniform_max(sm.act_bits, sm.zero_point) * v_max
        arith = Arith.of(Mode.MAC, 0, code_element_bits(out.act_bits), (Segment(0, nk, sm.zero_point, 0, 1, 0),),
                         out.q_min, out.q_max)
        pad = sm.zero_point
    check_pe(where, config, pe, "an A.V sum")
    check_lane(where, lane)
    n_pad = -(-dv // config.cols) * config.cols
    slot = ColumnSlot(v.zero_point, 0, int(out.multiplier[0]), int(out.shift[0]), int(out.zero_point[0]))
    return RowsSpec(where=where, arith=arith,
                    rows_in=TensorView("probs", tuple(p_shape), tuple(range(len(p_shape))), (items, nq, nk)),
                    row_pad=np.full(nk, pad), row_code_bits=sm.act_bits,
                    out=TensorView("output", tuple(p_shape[:-1]) + (dv,), tuple(range(len(p_shape))), (items, nq, dv)),
                    out_signed=False, slots=[slot] * config.cols, shared_slots=True,
                    weight_pad=np.full(n_pad, v.zero_point),
                    columns_in=TensorView("v", tuple(v_shape), tuple(range(len(v_shape))), (items, nk, dv)),
                    column_code_bits=v.act_bits)

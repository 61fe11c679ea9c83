"""Random but valid bundle layers of every kind the core runs, and their input codes (numpy only, no
torch): the generators of the compiler tests (``tests/test_compiler.py``, ``tests/synthetic_layers.py``)
and of the randomized co-simulation (``scripts/core_random_cosim.py``).

Fixed small layers for the tests::

    layer = linear_layer(rng, "cag", 72, 40, output="codes")
    layer = with_fitted_shift(layer, linear_accumulator(layer, random_codes(rng, (3, 37, 72))))

Fully random ones for a core (shapes, code widths, zero points, group tables and multipliers, HLUQ
levels, AGQ LUTs, requantization constants, a share of inputs and weights at extreme codes), each
within what the core and the bundle contract allow, so that the compiler accepts it::

    case = random_case(rng, "linear CAG", config)      # RandomCase(kind, layer, op, inputs, note)

Every constant that bounds an accumulator is drawn against the same worst cases the compiler checks
(``hw/compiler/lower.py``: PE sums below 2^(pe_acc_bits - 1), lane sums below 2^47), with a share at
the limit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from sw.bundle import (AgqCodes, AttentionLayer, CagCodes, CodesOutput, ConvLayer, HluqCodes, HostOutput,
                       LinearLayer, UniformCodes, Weights)

CODES_OUT, HOST_OUT = "codes", "host"
FIT_SHIFT_LATER = 40  # tests set the real shift from the accumulators they produce (fit_shift)
LANE_LIMIT = (1 << 47) - 1   # |combined accumulator| the bundle contract and the lanes allow
LANE_MULTIPLIER_MAX = (1 << 32) - 1   # the lanes multiply partial sums by at most 32-bit constants


# ---- fixed layers of the compiler and hardware tests ------------------------------------------------

def with_field(record, path: str, value):
    """A copy of ``record`` with the dotted field ``path`` set to ``value``."""
    head, _, rest = path.partition(".")
    if rest:
        value = with_field(getattr(record, head), rest, value)
    return dataclasses.replace(record, **{head: value})


def output_record(rng, kind: str, o: int, act_bits: int = 4):
    multiplier = rng.integers(2**30, 2**31, o)
    shift = np.full(o, FIT_SHIFT_LATER)
    if kind == HOST_OUT:
        return HostOutput(host_bits=16, scale=1.0, multiplier=multiplier, shift=shift)
    top = 2**act_bits - 1
    zero = rng.integers(top // 2 - 1, top // 2 + 2, o).astype(np.int64)
    return CodesOutput(act_bits=act_bits, consumers="test", multiplier=multiplier, shift=shift, zero_point=zero)


def input_codes(rng, fmt: str, c: int, act_bits: int = 4, groups: int = 4, log_levels: int = 4):
    """(code format, group multipliers) of a random input encoding."""
    if fmt == "uniform":
        return UniformCodes(act_bits=act_bits, scale=1.0, zero_point=int(rng.integers(0, 2**act_bits))), \
            np.array([2**24])
    if fmt == "cag":
        labels = rng.integers(0, groups, c).astype(np.int64)
        codes = CagCodes(act_bits=act_bits, channel_group=labels, permutation=np.argsort(labels, kind="stable"),
                         group_scale=np.ones(groups, np.float32),
                         group_zero_point=rng.integers(0, 2**act_bits, groups).astype(np.int64))
        return codes, rng.integers(2**24, 2**26, groups)
    codes = HluqCodes(act_bits=act_bits, m=0.0, s_log=1.0, s_uni=1.0, log_levels=log_levels)
    return codes, rng.integers(2**24, 2**27, 2)


def linear_layer(rng, fmt: str, c: int, o: int, *, act_bits=4, weight_bits=4, groups=4, log_levels=4,
                 output=CODES_OUT, name="gemm") -> LinearLayer:
    codes, multipliers = input_codes(rng, fmt, c, act_bits, groups, log_levels)
    weights = Weights(weight_bits=weight_bits, codes=rng.integers(0, 2**weight_bits, (o, c)).astype(np.uint8),
                      zero_point=rng.integers(0, 2**weight_bits, o).astype(np.int64),
                      scale=np.ones(o, np.float32))
    return LinearLayer(name=name, weights=weights, bias=np.zeros(o, np.float32),
                       bias_acc=rng.integers(-2**28, 2**28, o).astype(np.int64), input=codes,
                       group_multiplier=multipliers.astype(np.int64), group_frac_bits=24,
                       output=output_record(rng, output, o, act_bits))


def conv_layer(rng, c: int, o: int, kernel: int, *, stride=1, padding=0, groups=1, act_bits=4, weight_bits=4,
               output=HOST_OUT, name="conv") -> ConvLayer:
    """A conv with uniform input codes (dense, grouped or depthwise by ``groups``)."""
    codes, multipliers = input_codes(rng, "uniform", c, act_bits)
    shape = (o, c // groups, kernel, kernel)
    weights = Weights(weight_bits=weight_bits, codes=rng.integers(0, 2**weight_bits, shape).astype(np.uint8),
                      zero_point=rng.integers(0, 2**weight_bits, o).astype(np.int64), scale=np.ones(o, np.float32))
    return ConvLayer(name=name, weights=weights, bias=np.zeros(o, np.float32),
                     bias_acc=rng.integers(-2**28, 2**28, o).astype(np.int64), input=codes,
                     group_multiplier=multipliers.astype(np.int64), group_frac_bits=24,
                     output=output_record(rng, output, o, act_bits), stride=stride, padding=padding, groups=groups)


def agq_lut(tau: int) -> np.ndarray:
    return np.array([1] if tau == 1 else [round(2**15 * 2 ** (-r / tau)) for r in range(tau)], np.int64)


def attention_layer(rng, tau: int, max_shift: int, keys: int, value_zero: int | None = None, dim: int = 4,
                    name: str = "attn") -> AttentionLayer:
    """One-head attention with 4-bit uniform q/k/v and an AGQ softmax."""
    def uniform(zero=None):
        return UniformCodes(act_bits=4, scale=1.0, zero_point=int(rng.integers(0, 16) if zero is None else zero))

    softmax = AgqCodes(act_bits=4, tau=tau, scale=1.0, max_shift=max_shift, lut_frac_bits=0 if tau == 1 else 15,
                       lut=agq_lut(tau))
    output = CodesOutput(act_bits=4, consumers="test", multiplier=rng.integers(2**30, 2**31, 1),
                         shift=np.array([FIT_SHIFT_LATER]), zero_point=np.array([7]))
    return AttentionLayer(name=name, heads=1, key_dim=dim, value_dim=dim, max_keys=keys, logit_scale=dim ** -0.5,
                          q=uniform(), k=uniform(), v=uniform(value_zero), softmax=softmax, output=output)


def softmax_layer(rng, softmax: str) -> AttentionLayer:
    """A one-head attention with an AGQ softmax ("agq1", "agq2", "agq4": tau) or a uniform one ("uniform")."""
    if softmax == "uniform":
        layer = attention_layer(rng, 1, 14, keys=50, dim=8)
        return with_field(layer, "softmax", UniformCodes(act_bits=4, scale=1 / 15, zero_point=int(rng.integers(0, 4))))
    tau = int(softmax[-1])
    return attention_layer(rng, tau, {1: 14, 2: 7, 4: 3}[tau], keys=50, dim=8)


def fit_shift(acc: np.ndarray, output) -> np.ndarray:
    """Requant shift per channel (last axis) that maps the largest |acc| to about half the output
    range's half width, so most outputs land inside the range."""
    top = np.abs(np.asarray(acc)).reshape(-1, np.shape(acc)[-1]).max(0)
    half_range_bits = (output.q_max - output.q_min).bit_length() - 1
    return np.clip([int(t).bit_length() + 32 - half_range_bits for t in top], 17, 78).astype(np.int64)


def with_fitted_shift(layer, acc: np.ndarray):
    """``layer`` with its output shift fitted to ``acc`` (channels on the last axis; one shift for an
    attention, whose output has one constant)."""
    shift = fit_shift(acc, layer.output)
    if isinstance(layer, AttentionLayer):
        shift = fit_shift(np.ravel(acc)[:, None], layer.output)
    return with_field(layer, "output.shift", shift)


EXTREMES = [None, "low", "high", "alternate"]


def random_codes(rng, shape, bits=4, extreme=None) -> np.ndarray:
    """Random codes, or every code at one end of the range ("low", "high"), or alternating ends."""
    top = 2**bits - 1
    if extreme == "low":
        return np.zeros(shape, np.int64)
    if extreme == "high":
        return np.full(shape, top, np.int64)
    if extreme == "alternate":
        return np.where(np.indices(shape).sum(0) % 2, top, 0)
    if extreme == "ends":          # each code independently at one end or the other
        return np.where(rng.random(shape) < 0.5, 0, top).astype(np.int64)
    if extreme == "mixed":         # random, with a quarter of the codes at each end
        u = rng.random(shape)
        return np.where(u < 0.25, 0, np.where(u < 0.5, top, rng.integers(0, top + 1, shape))).astype(np.int64)
    return rng.integers(0, top + 1, shape)


# ---- fully random layers for a core ---------------------------------------------------------------

KINDS = ("linear uniform", "linear CAG", "linear HLUQ", "conv dense", "conv depthwise", "conv strided", "QK^T",
         "A.V AGQ", "A.V uniform")
# share of each input tensor's extreme modes (None: uniformly random codes)
INPUT_MODES = (None, None, None, None, None, None, "mixed", "low", "high", "alternate", "ends")


@dataclass
class RandomCase:
    kind: str                       # one of KINDS
    layer: object                   # LinearLayer, ConvLayer or AttentionLayer
    op: str | None                  # None, "scores" or "values"
    inputs: dict[str, np.ndarray]   # input codes by region name
    note: str                       # shapes, widths and extremes, for reports
    extremes: tuple[str, ...] = ()  # extreme input and weight modes drawn ("high", "weights low", ...)

    @property
    def shapes(self) -> dict[str, tuple]:
        return {k: v.shape for k, v in self.inputs.items()}


def _code_max(bits: int) -> int:
    return (1 << bits) - 1


def _uniform_max(bits: int, zero: int) -> int:
    return max(zero, _code_max(bits) - zero)


def _log_int(rng, lo: int, hi: int) -> int:
    """An integer in [lo, hi], log-uniformly distributed (small and large values equally likely)."""
    if hi <= lo:
        return lo
    return int(min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))))


def _size(rng, lo: int, hi: int) -> int:
    """An integer in [lo, hi]: uniform, or (a third of the time) log-uniform, which favours small ones."""
    if hi <= lo:
        return lo
    return _log_int(rng, lo, hi) if rng.random() < 0.35 else int(rng.integers(lo, hi + 1))


def _bits(rng, limit: int, low: int = 2) -> int:
    """A code width up to ``limit``: mostly 4 .. limit, sometimes 2 or 3."""
    if low < 4 and rng.random() < 0.12:
        return int(rng.integers(low, 4))
    return int(rng.integers(min(4, limit), limit + 1))


def _zero_point(rng, bits: int) -> int:
    """A zero point anywhere in the code range, a share at its ends."""
    u = rng.random()
    if u < 0.1:
        return 0
    if u < 0.2:
        return _code_max(bits)
    return int(rng.integers(0, _code_max(bits) + 1))


def _leading(rng, rows: int) -> tuple[int, ...]:
    """Random leading axes whose product is about ``rows``."""
    n = int(rng.integers(0, 3))
    if n == 0 or rows < 2:
        return (rows,)
    first = _log_int(rng, 1, max(1, rows // 2))
    rest = max(1, rows // first)
    return (first, rest) if n == 1 else (1, first, rest)


def _weights(rng, o: int, inner: tuple, bits: int) -> tuple[Weights, str]:
    """Random weight codes and zero points; a share all at one end (or the zero point)."""
    shape = (o,) + inner
    u = rng.random()
    mode = "random"
    codes = rng.integers(0, _code_max(bits) + 1, shape)
    zero = np.array([_zero_point(rng, bits) for _ in range(o)], np.int64)
    if u < 0.06:
        codes, mode = np.zeros(shape, np.int64), "weights low"
    elif u < 0.12:
        codes, mode = np.full(shape, _code_max(bits)), "weights high"
    elif u < 0.18:
        codes, mode = np.where(rng.random(shape) < 0.5, 0, _code_max(bits)), "weights at ends"
    elif u < 0.21:
        codes, mode = np.broadcast_to(zero.reshape((o,) + (1,) * len(inner)), shape).copy(), "weights zero"
    return Weights(weight_bits=bits, codes=codes.astype(np.uint8), zero_point=zero,
                   scale=np.ones(o, np.float32)), mode


def _multipliers(rng, bases: list[int], bias: int) -> list[int]:
    """Group multipliers m_s >= 1 with |bias| + sum m_s bases[s] < 2^47 and m_s < 2^32; a share at
    the largest the budget allows."""
    budget = LANE_LIMIT - bias
    n = max(1, sum(1 for b in bases if b))
    at_limit = rng.random() < 0.2
    out = []
    for b in bases:
        top = LANE_MULTIPLIER_MAX if b == 0 else max(1, min(LANE_MULTIPLIER_MAX, budget // (n * b)))
        out.append(top if at_limit else _log_int(rng, 1, top))
    return out


def _bias(rng, o: int, scale: int) -> np.ndarray:
    """bias_acc of about the accumulators' size (``scale``), a share zero."""
    if rng.random() < 0.15 or scale == 0:
        return np.zeros(o, np.int64)
    top = max(1, min(scale, LANE_LIMIT // 4))
    return np.array([int(rng.integers(-top, top + 1)) for _ in range(o)], np.int64)


def _output(rng, o: int, one: bool = False, host_ok: bool = True):
    """Random requantization target: codes of 4..8 bits or host integers of 2..32 bits (shift fitted
    later)."""
    n = 1 if one else o
    u = rng.random()
    if u < 0.1:
        multiplier = np.full(n, 2**30)
    elif u < 0.2:
        multiplier = np.full(n, 2**31 - 1)
    else:
        multiplier = rng.integers(2**30, 2**31, n)
    shift = np.full(n, FIT_SHIFT_LATER)
    if host_ok and rng.random() < 0.4:
        bits = int(rng.choice([2, 4, 8, 12, 16, 16, 16, 20, 24, 32, 32]))
        return HostOutput(host_bits=bits, scale=1.0, multiplier=multiplier, shift=shift)
    bits = int(rng.integers(4, 9))
    zero = np.array([_zero_point(rng, bits) for _ in range(n)], np.int64)
    return CodesOutput(act_bits=bits, consumers="random", multiplier=multiplier, shift=shift, zero_point=zero)


def _fit(rng, layer, acc: np.ndarray, channel_axis: int = -1):
    """Fit the output shift to ``acc`` and jitter it by -2..+3 (more or fewer clamped outputs)."""
    acc = np.moveaxis(np.asarray(acc), channel_axis, -1)
    if isinstance(layer, AttentionLayer):
        acc = np.ravel(acc)[:, None]
    shift = fit_shift(acc, layer.output) + rng.integers(-2, 4, acc.shape[-1])
    return with_field(layer, "output.shift", np.clip(shift, 17, 78).astype(np.int64))


def _input(rng, shape, bits: int) -> tuple[np.ndarray, str]:
    mode = INPUT_MODES[int(rng.integers(0, len(INPUT_MODES)))]
    return random_codes(rng, shape, bits, mode), mode or "random"


def _gemm_bases(x_max: list[int], w: np.ndarray, segments: list[np.ndarray]) -> list[int]:
    """Worst |partial sum| of each segment: x_max[s] * max over outputs of sum |w| over its channels
    (``w`` signed [O, C], ``segments`` channel index arrays)."""
    return [int(xm) * int(np.abs(w[:, idx]).sum(1).max(initial=0)) for xm, idx in zip(x_max, segments)]


def random_linear(rng, config, fmt: str, max_reduction: int = 128, max_rows: int = 400) -> RandomCase:
    from sw.ref.layers import linear_accumulator

    c = _size(rng, 8, max_reduction)
    o = _size(rng, 1, 64)
    rows = _size(rng, 1, max_rows)
    lead = _leading(rng, rows)
    bits = _bits(rng, config.act_bits)
    weights, wmode = _weights(rng, o, (c,), _bits(rng, config.weight_bits))
    w = weights.codes.astype(np.int64) - weights.zero_point[:, None]
    cmax = _code_max(bits)
    note = [f"C={c} O={o} in={list(lead)} bits={bits}/{weights.weight_bits}"]
    if fmt == "uniform":
        fmt_rec = UniformCodes(act_bits=bits, scale=1.0, zero_point=_zero_point(rng, bits))
        bases = _gemm_bases([_uniform_max(bits, fmt_rec.zero_point)], w, [np.arange(c)])
    elif fmt == "cag":
        groups = int(rng.integers(1, min(config.max_segments, c) + 1))
        labels = rng.integers(0, groups, c).astype(np.int64)
        order = rng.permutation(groups)               # groups contiguous in a random order,
        perm = np.concatenate([rng.permutation(np.flatnonzero(labels == g)) for g in order])  # channels shuffled
        zeros = np.array([_zero_point(rng, bits) for _ in range(groups)], np.int64)
        fmt_rec = CagCodes(act_bits=bits, channel_group=labels, permutation=perm.astype(np.int64),
                           group_scale=np.ones(groups, np.float32), group_zero_point=zeros)
        bases = _gemm_bases([_uniform_max(bits, int(z)) for z in zeros], w,
                            [np.flatnonzero(labels == g) for g in range(groups)])
        note.append(f"groups={groups}")
    else:
        levels = int(rng.integers(1, min(cmax, config.max_shift + 1) + 1))
        fmt_rec = HluqCodes(act_bits=bits, m=0.0, s_log=1.0, s_uni=1.0, log_levels=levels)
        bases = _gemm_bases([1 << (levels - 1), max(0, cmax - levels)], w, [np.arange(c)] * 2)
        note.append(f"L={levels}")
    bias_scale = _log_int(rng, 1, max(1, max(bases) * 64))
    bias = _bias(rng, o, bias_scale)
    gm = _multipliers(rng, bases, int(np.abs(bias).max(initial=0)))
    layer = LinearLayer(name=f"linear_{fmt}", weights=weights, bias=np.zeros(o, np.float32), bias_acc=bias,
                        input=fmt_rec, group_multiplier=np.array(gm, np.int64), group_frac_bits=0,
                        output=_output(rng, o))
    x, mode = _input(rng, lead + (c,), bits)
    layer = _fit(rng, layer, linear_accumulator(layer, random_codes(rng, lead + (c,), bits)))
    note += [f"m={gm}", _out_note(layer.output), mode, wmode]
    return RandomCase(f"linear {dict(uniform='uniform', cag='CAG', hluq='HLUQ')[fmt]}", layer, None, {"input": x},
                      " ".join(note), _extremes(mode, wmode))


def _extremes(*modes: str) -> tuple[str, ...]:
    return tuple(m for m in modes if m != "random")


def _out_note(out) -> str:
    if isinstance(out, HostOutput):
        return f"host{out.host_bits}"
    return f"codes{out.act_bits}"


def random_conv(rng, config, shape_kind: str, max_reduction: int = 128, max_outputs: int = 12000) -> RandomCase:
    from sw.ref.layers import conv_accumulator

    if shape_kind == "dense":
        k = int(rng.choice([1, 2, 3, 3, 3]))
        stride, padding = 1, int(rng.integers(0, k))
        c = _size(rng, 1, max(1, min(32, max_reduction // (k * k))))
        o = _size(rng, 1, 32)
        groups = 1
        if rng.random() < 0.25:                          # grouped: dense with zero weights outside groups
            common = [g for g in (2, 3, 4) if c % g == 0 and o % g == 0 and not c == o == g]  # not depthwise
            groups = int(rng.choice(common)) if common else 1
    elif shape_kind == "depthwise":
        k = int(rng.choice([2, 3, 3, 3, 5]))
        stride, padding = 1, int(rng.integers(0, k))
        c = o = groups = _size(rng, 2, 48)
    else:                                                # stride 2 (patch merging) or 3
        stride = 2 if rng.random() < 0.85 else 3
        variant = rng.random()
        if variant < 0.45:                               # TinyViT patch merging: depthwise 3x3, padding 1
            k, padding = 3, 1
            c = o = groups = _size(rng, 2, 48)
        elif variant < 0.75:                             # dense, kernel = stride (patch embedding)
            k, padding = stride, 0
            c, o, groups = _size(rng, 1, max(1, min(32, max_reduction // (k * k)))), _size(rng, 1, 32), 1
        else:                                            # dense 3x3 with padding 0 or 1
            k, padding = 3, int(rng.integers(0, 2))
            c, o, groups = _size(rng, 1, max(1, min(16, max_reduction // 9))), _size(rng, 1, 32), 1
    bits = _bits(rng, config.act_bits)
    weights, wmode = _weights(rng, o, (c // groups, k, k), _bits(rng, config.weight_bits))
    zero = _zero_point(rng, bits)
    per_image = max(1, max_outputs // o)
    b = 1 if rng.random() < 0.7 else 2
    side = max(1, int(math.sqrt(per_image / b)))
    ho = _size(rng, 1, max(1, min(24, side * 2)))
    wo = max(1, min(24, per_image // (b * ho)))
    wo = _size(rng, 1, wo)
    h, wd = max(k - 2 * padding, 1, (ho - 1) * stride + k - 2 * padding), \
        max(k - 2 * padding, 1, (wo - 1) * stride + k - 2 * padding)
    h += int(rng.integers(0, stride))                    # rows the stride leaves unused
    wd += int(rng.integers(0, stride))
    w = weights.codes.astype(np.int64) - weights.zero_point.reshape(-1, 1, 1, 1)
    base = _uniform_max(bits, zero) * int(np.abs(w).reshape(o, -1).sum(1).max())
    bias = _bias(rng, o, _log_int(rng, 1, max(1, base * 64)))
    gm = _multipliers(rng, [base], int(np.abs(bias).max(initial=0)))
    layer = ConvLayer(name=f"conv_{shape_kind}", weights=weights, bias=np.zeros(o, np.float32), bias_acc=bias,
                      input=UniformCodes(act_bits=bits, scale=1.0, zero_point=zero),
                      group_multiplier=np.array(gm, np.int64), group_frac_bits=0, output=_output(rng, o),
                      stride=stride, padding=padding, groups=groups)
    shape = (b, c, h, wd)
    x, mode = _input(rng, shape, bits)
    layer = _fit(rng, layer, conv_accumulator(layer, random_codes(rng, shape, bits)), 1)
    note = (f"C={c} O={o} k={k} s={stride} p={padding} g={groups} in={list(shape)} bits={bits}/{weights.weight_bits} "
            f"m={gm} {_out_note(layer.output)} {mode} {wmode}")
    return RandomCase(f"conv {shape_kind}", layer, None, {"input": x}, note, _extremes(mode, wmode))


def _attention(name: str, heads: int, dk: int, dv: int, keys: int, q, k, v, softmax, output) -> AttentionLayer:
    return AttentionLayer(name=name, heads=heads, key_dim=dk, value_dim=dv, max_keys=keys, logit_scale=1.0,
                          q=q, k=k, v=v, softmax=softmax, output=output)


def _items(rng, max_items: int) -> tuple[tuple[int, ...], int]:
    """Leading axes (windows..., heads) of an attention operand."""
    heads = _log_int(rng, 1, 4)
    windows = _size(rng, 1, max(1, max_items // heads))
    lead = (windows, heads) if rng.random() < 0.7 else (1, windows, heads)
    return lead, heads


def random_scores(rng, config, max_reduction: int = 128, max_outputs: int = 12000) -> RandomCase:
    u = rng.random()
    if u < 0.1:       # 2-bit codes and a short reduction: scores that fit 8-bit elements
        qb, kb, d = 2, 2, int(rng.integers(8, 15))
    else:             # a share with reductions up to twice as long: 32-bit elements from 4-bit codes too
        qb, kb = _bits(rng, config.act_bits), _bits(rng, config.weight_bits)
        d = _size(rng, 8, 2 * max_reduction if u > 0.9 else max_reduction)
    lead, heads = _items(rng, 12)
    items = int(np.prod(lead))
    nk = _size(rng, 1, 96)
    nq = _size(rng, 1, max(1, min(96, max_outputs // (items * nk))))
    q = UniformCodes(act_bits=qb, scale=1.0, zero_point=_zero_point(rng, qb))
    k = UniformCodes(act_bits=kb, scale=1.0, zero_point=_zero_point(rng, kb))
    sm = UniformCodes(act_bits=8, scale=1 / 255, zero_point=0)
    out = CodesOutput(act_bits=8, consumers="random", multiplier=np.array([2**30]), shift=np.array([40]),
                      zero_point=np.array([0]))
    layer = _attention("attn_scores", heads, d, d, nk, q, k, q, sm, out)
    xq, mq = _input(rng, lead + (nq, d), qb)
    xk, mk = _input(rng, lead + (nk, d), kb)
    note = f"items={list(lead)} Nq={nq} Nk={nk} d={d} bits={qb}/{kb} z={q.zero_point}/{k.zero_point} q {mq} k {mk}"
    return RandomCase("QK^T", layer, "scores", {"q": xq, "k": xk}, note, _extremes(mq, mk))


def random_values(rng, config, softmax: str, max_reduction: int = 128, max_outputs: int = 12000) -> RandomCase:
    from sw.ref.kernels import attention_values
    from sw.ref.layers import probability_operands

    pb, vb = _bits(rng, config.act_bits), _bits(rng, config.weight_bits)
    nk = _size(rng, 8, max_reduction)
    dv = _size(rng, 1, 64)
    lead, heads = _items(rng, 12)
    items = int(np.prod(lead))
    nq = _size(rng, 1, max(1, min(96, max_outputs // (items * dv))))
    v = UniformCodes(act_bits=vb, scale=1.0, zero_point=_zero_point(rng, vb))
    v_max = _uniform_max(vb, v.zero_point)
    pe_limit = (1 << (config.pe_acc_bits - 1)) - 1
    if softmax == "agq":
        tau = int(rng.choice([1, 2, 4]))
        # Q: the PE sum nk 2^Q v_max must fit the PE accumulators and the lanes (with lut >= 1)
        q_top = min(config.max_shift, _code_max(pb), (min(pe_limit, LANE_LIMIT) // max(1, nk * v_max)).bit_length() - 1)
        q_top = max(q_top, 0)
        shift = q_top if rng.random() < 0.25 else int(rng.integers(0, q_top + 1))
        lut_top = min(LANE_MULTIPLIER_MAX, LANE_LIMIT // max(1, nk * v_max * (1 << shift)))
        frac_top = max(0, min(31, lut_top.bit_length() - 1))
        frac = 0 if tau == 1 and rng.random() < 0.5 else (frac_top if rng.random() < 0.2
                                                           else int(rng.integers(0, frac_top + 1)))
        lut = [1 << frac]
        for r in range(1, tau):
            if rng.random() < 0.5:
                lut.append(max(1, round(2**frac * 2 ** (-r / tau))))
            else:
                lut.append(_log_int(rng, 1, lut_top))
        sm = AgqCodes(act_bits=pb, tau=tau, scale=1.0, max_shift=shift, lut_frac_bits=frac, lut=np.array(lut, np.int64))
        snote = f"tau={tau} Q={shift} lut={lut}"
    else:
        sm = UniformCodes(act_bits=pb, scale=1.0 / _code_max(pb), zero_point=_zero_point(rng, pb))
        snote = f"softmax z={sm.zero_point}"
    out = _output(rng, 1, one=True, host_ok=False)
    q = UniformCodes(act_bits=4, scale=1.0, zero_point=0)
    layer = _attention(f"attn_values_{softmax}", heads, 8, dv, nk, q, q, v, sm, out)
    p_shape, v_shape = lead + (nq, nk), lead + (nk, dv)
    p, mp = _input(rng, p_shape, pb)
    xv, mv = _input(rng, v_shape, vb)
    acc = attention_values(probability_operands(sm, random_codes(rng, p_shape, pb)), random_codes(rng, v_shape, vb),
                           v.zero_point)
    layer = _fit(rng, layer, acc)
    note = (f"items={list(lead)} Nq={nq} Nk={nk} dv={dv} bits={pb}/{vb} {snote} z_v={v.zero_point} "
            f"codes{out.act_bits} p {mp} v {mv}")
    return RandomCase(f"A.V {'AGQ' if softmax == 'agq' else 'uniform'}", layer, "values", {"probs": p, "v": xv}, note,
                      _extremes(mp, mv))


def random_case(rng, kind: str, config, max_reduction: int = 128) -> RandomCase:
    """One random layer of ``kind`` (see ``KINDS``) with its input codes, valid for ``config``."""
    if kind.startswith("linear "):
        return random_linear(rng, config, kind.split()[1].lower(), max_reduction)
    if kind.startswith("conv "):
        return random_conv(rng, config, kind.split()[1], max_reduction)
    if kind == "QK^T":
        return random_scores(rng, config, max_reduction)
    if kind == "A.V AGQ":
        return random_values(rng, config, "agq", max_reduction)
    if kind == "A.V uniform":
        return random_values(rng, config, "uniform", max_reduction)
    raise ValueError(f"unknown layer kind '{kind}' (kinds: {', '.join(KINDS)})")

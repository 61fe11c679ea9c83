"""Synthetic bundle records (no torch) for the hardware and contract tests: random but valid layers,
and ``with_field`` to change one nested field of a frozen record (which re-runs its checks)."""

from __future__ import annotations

import dataclasses

import numpy as np

from sw.bundle import (AgqCodes, AttentionLayer, CagCodes, CodesOutput, HluqCodes, HostOutput, LinearLayer,
                       UniformCodes, Weights)

CODES_OUT, HOST_OUT = "codes", "host"
FIT_SHIFT_LATER = 40  # tests set the real shift from the accumulators they produce (fit_shift)


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

"""Bus words that load an engine run (registers and memory images) and the decoding of its output
memory: the one place that knows the word layouts of ``EngineConfig.memories``, shared by the Python
simulator tests and the cocotb testbench."""

from __future__ import annotations

import numpy as np

from .config import EngineConfig
from .layers import Operands


def _pack(values: np.ndarray, bits: int) -> list[int]:
    """Rows of ``values`` [words, lanes] as integers, lane i in bits [i*bits, (i+1)*bits)."""
    mask = (1 << bits) - 1
    out = []
    for row in np.asarray(values, np.int64):
        word = 0
        for i, v in enumerate(row):
            word |= (int(v) & mask) << (i * bits)
        out.append(word)
    return out


def _check(values, lo: int, hi: int, what: str) -> None:
    values = np.asarray(values, np.int64)
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"{what} outside [{lo}, {hi}]: the engine's ports cannot hold it")


def load_words(config: EngineConfig, ops: Operands) -> list[tuple[int, int]]:
    """(address, data) bus writes that set up one run of ``ops`` on ``config``'s engine."""
    c = config
    R, K, C = c.pe_rows, c.pe_cols, c.reduction
    n, o = ops.x.shape[0], ops.w.shape[0]
    if ops.x.shape[1] != C or ops.w.shape[1] != C or o > c.outputs or n > c.max_rows or n < 1:
        raise ValueError(f"operands x{list(ops.x.shape)} w{list(ops.w.shape)} do not fit the engine "
                         f"(reduction {C}, outputs {c.outputs}, rows <= {c.max_rows})")
    _check(ops.x, 0, (1 << c.act_bits) - 1, "activation codes")
    _check(ops.w, 0, (1 << c.weight_bits) - 1, "weight codes")
    words = []
    row_blocks = -(-n // R)
    regs = {"row_blocks": row_blocks, **ops.registers}
    for name, width in c.registers():
        if name not in regs:
            raise ValueError(f"operands give no value for register '{name}'")
        words.append((c.address(0, c.register_address(name)), int(regs[name]) & ((1 << width) - 1)))

    x = np.zeros((row_blocks * R, C), np.int64)
    x[:n] = ops.x
    act = x.reshape(row_blocks, R, C).transpose(0, 2, 1).reshape(-1, R)  # word rb*C + j, lane r
    words += [(c.address("act", i), v) for i, v in enumerate(_pack(act, c.act_bits))]
    w = np.zeros((c.out_blocks * K, C), np.int64)
    w[:o] = ops.w
    wgt = w.reshape(c.out_blocks, K, C).transpose(0, 2, 1).reshape(-1, K)
    words += [(c.address("wgt", i), v) for i, v in enumerate(_pack(wgt, c.weight_bits))]
    if c.groups > 1:
        _check(ops.groups, 0, c.groups - 1, "channel groups")
        words += [(c.address("grp", j), int(g)) for j, g in enumerate(ops.groups)]
    if c.kind != "agq":
        bias_bits = c.widths.bias_bits
        _check(ops.bias, -(1 << (bias_bits - 1)), (1 << (bias_bits - 1)) - 1, "bias")
        _check(ops.zero_w, 0, (1 << c.weight_bits) - 1, "weight zero points")
        for ch in range(o):
            word = int(ops.zero_w[ch]) | ((int(ops.bias[ch]) & ((1 << bias_bits) - 1)) << c.weight_bits)
            words.append((c.address(f"col{ch % K}", ch // K), word))
    if c.requant:
        r = c.requant
        multiplier, shift, zero = (np.asarray(a, np.int64) for a in ops.requant)
        _check(zero, r.q_min, r.q_max, "output zero points")
        for ch in range(o):
            word = (int(multiplier[ch]) | int(shift[ch]) << 31
                    | (int(zero[ch]) & ((1 << r.zero_point_bits) - 1)) << (31 + r.shift_bits))
            words.append((c.address("rq", ch), word))
    return words


def output_addresses(config: EngineConfig, rows: int) -> list[int]:
    """Bus addresses of the output words a run over ``rows`` rows writes, in tile order."""
    row_blocks = -(-rows // config.pe_rows)
    return [config.address("out", i) for i in range(row_blocks * config.out_blocks * config.pes)]


def decode_outputs(config: EngineConfig, words: list[int], rows: int, outputs: int) -> np.ndarray:
    """y [rows, outputs] from the output words read at ``output_addresses`` (tile order)."""
    c = config
    row_blocks = -(-rows // c.pe_rows)
    raw = np.array(words, dtype=object).reshape(row_blocks, c.out_blocks, c.pe_rows, c.pe_cols)
    raw = raw.transpose(0, 2, 1, 3).reshape(row_blocks * c.pe_rows, c.out_blocks * c.pe_cols)
    bits = c.out_bits
    y = np.array([[int(v) - (1 << bits) if c.out_signed and int(v) >> (bits - 1) else int(v) for v in row]
                  for row in raw], dtype=np.int64)
    return y[:rows, :outputs]


def expected_words(config: EngineConfig, y: np.ndarray) -> tuple[list[int], list[int]]:
    """(addresses, words) of the output memory that hold y [rows, outputs] (the padding rows and
    columns of partial tiles are left out), as unsigned out_bits-wide words."""
    c = config
    rows, outputs = y.shape
    if c.requant is None:
        lo, hi = -(1 << (c.out_bits - 1)), (1 << (c.out_bits - 1)) - 1
    else:
        lo, hi = c.requant.q_min, c.requant.q_max
    _check(y, lo, hi, "expected outputs")
    mask = (1 << c.out_bits) - 1
    addrs, words = [], []
    for n in range(rows):
        rb, r = divmod(n, c.pe_rows)
        for o in range(outputs):
            ob, k = divmod(o, c.pe_cols)
            addrs.append(c.address("out", ((rb * c.out_blocks + ob) * c.pe_rows + r) * c.pe_cols + k))
            words.append(int(y[n, o]) & mask)
    return addrs, words

"""What every tiled GEMM of the compiler shares: the descriptor's arithmetic part, the buffer capacity
of one half, and the result of planning one invocation (jobs, static images, tensor regions)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from hw.core.config import CoreConfig
from hw.core.isa import (OUT_WIDTHS, ColumnSlot, DescActStrides, DescLoops, DescOtherStrides, LookupStep, Segment,
                         desc_words, element_bits)
from hw.fsim.layout import Descriptor

from .emit import Job, changed_fills
from .errors import CompileError
from .regions import Region

MAX_OUT_ROW = (1 << 8) - 1          # DescOtherStrides.out_row


def code_element_bits(code_bits: int) -> int:
    """OUT element width of codes: 4-bit codes are stored as 4-bit elements (half the words of 8)."""
    return 4 if code_bits <= 4 else 8


@dataclass(frozen=True)
class Arith:
    """An invocation's descriptor but for the loop counts (n_ob, n_c, n_i, n_d), which the tiling sets:
    how to compute, the same for every GEMM of the invocation."""

    loops: DescLoops
    segments: tuple[Segment, ...]
    lookup: tuple[LookupStep, ...] = ()

    @classmethod
    def of(cls, mode: int, raw: int, element_bits: int, segments: tuple[Segment, ...], q_min: int = 0,
           q_max: int = 0, **shift_modes) -> "Arith":
        """``shift_modes``: tau_log2, max_shift, zero_code (AGQ), log_levels (HLUQ), uses_y."""
        fields = {**dict(tau_log2=0, max_shift=0, zero_code=0, log_levels=0, uses_y=0), **shift_modes}
        return cls(DescLoops(mode=mode, raw=raw, out_width=OUT_WIDTHS[element_bits],
                             n_seg=len(segments), q_min=q_min, q_max=q_max, n_ob=0, n_c=0, n_i=0, n_d=0, **fields),
                   tuple(segments))

    @property
    def element_bits(self) -> int:
        return element_bits(self.loops.out_width)

    def looked_up(self, code_bits: int, base: int, steps) -> "Arith":
        """The same GEMM writing codes of ``code_bits`` through an output lookup (``base``, steps of
        (threshold, down)) of its clamped outputs."""
        loops = dataclasses.replace(self.loops, out_width=OUT_WIDTHS[code_element_bits(code_bits)],
                                    lookup_steps=len(steps), lookup_base=base)
        return Arith(loops, self.segments, tuple(LookupStep(t, d) for t, d in steps))

    def desc_words(self, bus_bits: int) -> int:
        return desc_words(len(self.segments), bus_bits, len(self.lookup))

    def descriptor(self, n_ob: int, n_c: int, n_i: int, n_d: int, act: DescActStrides,
                   other: DescOtherStrides, packed: bool = False) -> Descriptor:
        loops = dataclasses.replace(self.loops, n_seg=len(self.segments), n_ob=n_ob, n_c=n_c, n_i=n_i, n_d=n_d,
                                    packed=int(packed))
        return Descriptor(loops, act, other, self.segments, self.lookup)


@dataclass(frozen=True)
class Capacity:
    """What one slot (half, or the whole buffer when single-buffered) of each area holds."""

    act_codes: int
    wgt_vectors: int
    slots: int
    out_words: int

    @classmethod
    def of(cls, config: CoreConfig, slots: int, arith: Arith, descriptors: int = 2) -> "Capacity":
        # room for a few descriptors (full and last column chunk) ahead of the slot halves
        reserve = descriptors * arith.desc_words(config.bus_bits)
        return cls(act_codes=config.act_words // slots * config.codes_per_act_word,
                   wgt_vectors=config.wgt_words // slots * config.vectors_per_wgt_word,
                   slots=(config.param_words - reserve) // slots * config.slots_per_param_word,
                   out_words=config.out_words // slots)


@dataclass
class Plan:
    """One invocation, planned: jobs for ``emit_streams``, static images by region role (bytes), and
    the tensor regions with word counts, all based at 0 until placed."""

    jobs: list[Job]
    slots: int
    static: dict[str, np.ndarray]
    inputs: dict[str, Region]     # by the role the jobs' copies name: rows, columns, conv
    outputs: dict[str, Region]    # out
    macs: int


def moved_words(plan: Plan) -> dict[str, int]:
    """External words the plan's loads move per area (act, wgt, slots) and its stores (out), a fill counted
    only where its area's content changes (as ``emit_streams`` skips it), runs of the core not split."""
    current, words = {}, {}
    for job in plan.jobs:
        for fill in changed_fills(job, current):
            words[fill.area] = words.get(fill.area, 0) + sum(c.rows * c.row_words for c in fill.copies)
        words["out"] = words.get("out", 0) + sum(c.rows * c.row_words for c in job.stores)
    return words


def words_moved(plan: Plan) -> int:
    return sum(moved_words(plan).values())


def round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def largest(limit: int, ok) -> int:
    """The largest n in 1..limit with ok(n) (ok is monotone: true up to some n); 0 if none."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def chunks(total: int, size: int) -> list[tuple[int, int]]:
    """(start, length) of consecutive chunks of ``size`` covering ``total``."""
    return [(s, min(size, total - s)) for s in range(0, total, size)]


def too_big(where: str, tile: str, slots: int, needs: dict[str, tuple[int, int]]) -> CompileError:
    """Refusal naming every buffer that one minimal tile overflows: needs = {buffer: (words, words held)}."""
    over = [f"{need} {name} words (the core has {have} per {'half' if slots == 2 else 'buffer'})"
            for name, (need, have) in needs.items() if need > have]
    return CompileError(f"{where}: {tile} needs {' and '.join(over) or 'more instruction fields than fit'}")


def slot_blocks(slots: list[ColumnSlot], ks: int, cols: int, shared: bool) -> list[ColumnSlot]:
    """Slots in blocks of ``ks`` (``cols`` real ones each, the rest zero) so every block starts a word."""
    zero = ColumnSlot(0, 0, 0, 0, 0)
    blocks = [slots[i:i + cols] for i in range(0, len(slots), cols)] if not shared else [slots]
    return [s for block in blocks for s in list(block) + [zero] * (ks - len(block))]

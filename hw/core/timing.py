"""Cycle model of the core: the exact run length (the CYCLES register) of a program on the RTL with
the simulation memory, from closed forms per instruction and an event-level walk of the three units,
their tokens and the COMPUTE unit's segments (no cycle-by-cycle simulation).

    result = run_timing(config, streams, memory)     # result.cycles == the RTL's CYCLES

``memory`` is needed only for what LOADs put into PARAM (each GEMM's descriptor shapes its timing).
Every rule below is a statement about the RTL (cycle t is "run cycle t"; cycle 0 follows the start
write; an event "at t" happens in cycle t and is seen by others from t + 1).

Units and tokens
  F1  An instruction can start (be *taken*) in cycle 2 at the earliest, and 2 cycles after the unit
      took its previous one (fetch), and not before the unit is free (below).
  T1  The k-th wait on a counter is satisfied from one cycle after the counter's k-th signal.
  T2  The run ends in the cycle the last END is taken; CYCLES = that cycle + 1.

LOAD (``load_unit.py``), taken at t, B = rows x row_words beats
  L1  B = 0: finishes at t + 1.  Otherwise finishes at t + mem_read_latency + B: the first burst's
      request goes out at t + 1, bursts (cut at rows and 4 KiB boundaries) are requested one per
      cycle with up to mem_read_latency + 1 in flight, which keeps the beats back to back.
  L2  A LOAD signals when it finishes; the unit is free the cycle after. SYNC signals when taken.

STORE (``store_unit.py``), taken at t
  S1  B = 0: finishes at t + 1.  Otherwise the first beat is on the bus at t + 3, beats are back to
      back, and the last burst's response arrives mem_write_latency after the last beat: finishes at
      t + 2 + B + mem_write_latency. Signals and frees as L2.

COMPUTE (``compute.py``, ``issue.py``, ``consts.py``, ``sequencer.py``), GEMM taken at t0, with
R rows, K cols, spw = bus_bits / 128, RW = ceil(K / spw) slot reads per column block, nsw =
ceil(n_seg / spw) segment words plus ceil(lookup_steps / 8) lookup words, W = OUT words per row vector,
d = out_write_delay, a = acc_ready_delay
  C1  Setup: descriptor words are read in t0 + 1 .. t0 + 3 + nsw; the constant prefetcher is armed at
      A = t0 + 4 + nsw; each segment whose start is neither 0 nor the previous segment's end (a
      "general" start) costs 51 cycles; the issue loop starts at y = t0 + 5 + nsw + 51 g, so the
      first term can issue at y + 1.
  C2  A GEMM without tiles (n_batch, n_ob or n_rb = 0) finishes at z = max(y + 1, drained), where
      drained is the first cycle the lanes have nothing left to write; it signals at z, frees at z + 1.
  C3  Terms issue one per cycle in loop order (b, ob, rb, segment, j); a segment of j_len = 0 issues
      one null term. Only two terms ever wait:
      - the first term of a column block (rb = 0, first segment) waits until that block's constants
        are staged: ready = p + RW + 1, where the block's prefetch begins at p = the first cycle that
        is >= A + 1 (the GEMM's first block) and >= the cycle after the previous block released the
        staging registers: its zero points at F + 2 (F = its first term), its lane constants (non-raw
        GEMMs) at Q + 1 (Q = the output pass of its first tile);
      - a segment's last term waits until the previous segment's job (in issue order, across tiles
        and GEMMs) has started (C_prev) and reads the shadows for at most 4 more cycles
        (LR_prev - 4): E >= max(F_seg + terms - 1, C_prev, LR_prev - 4).
  C4  A segment whose last term issues at E has its job decided at D = max(E + 4, L_prev), where
      L_prev is the previous job's last cycle; the job starts at C = D + 1 and runs
      - raw: an output pass, cycles C .. C + R W - 1, reading the shadows until LR = C + (R - 1) W;
      - otherwise: combine passes of R cycles (X; then Y if uses_y), P = R (1 + uses_y) cycles,
        LR = C + P - 1; after the tile's last segment, the output pass at Q = C + P + max(0, a - R),
        cycles Q .. Q + R W - 1.
      L = the job's last cycle. Each output-pass cycle x writes one OUT word at x + d.
  C5  The GEMM frees the unit the cycle after its last term issues (E_last + 1) and signals
      ``signal_prev`` at E_last and ``signal_next`` at its last OUT write (its last job's L + d).
  C6  drained = L + d + 1 of the last job with an output pass. A SYNC with a signal flag, END and
      SOFTMAX are taken no earlier than drained; other SYNCs ignore the lanes.

SOFTMAX (``softmax_driver.py``, ``hw/softmax/path.py``), taken at t, n_rows rows of ``keys`` keys
  X1  n_rows or keys = 0: finishes at t + 1. Otherwise the path starts at t + 1 and its last codes leave
      the unit at t + 1 + row_cycles(keys, n_rows) + FEED_LATENCY (``unit.row_cycles``: the unit's own
      schedule, the feeder never keeping it waiting); their word is written one cycle later, when the
      SOFTMAX finishes: t + 2 + row_cycles + FEED_LATENCY. It signals when it finishes and frees the
      unit the cycle after.
  X2  With ``bias_load`` and a grid bias of side s, the table's s^2 entries are first copied from PARAM into
      the path, one a cycle from t + 2 (each read a cycle before); the path starts at t + 1 + s^2, so the
      SOFTMAX finishes s^2 cycles later than X1 says.
"""

from __future__ import annotations

from bisect import insort
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .config import SLOT_BITS, CoreConfig
from ..softmax.path import FEED_LATENCY
from ..softmax.unit import row_cycles
from .isa import DESC_FIXED_WORDS, DESC_WORD_BITS, Buffer, DescLoops, Gemm, Opcode, Segment, Transfer, desc_words
from .params import CoreParams, output_row_cycles, read_window
from .segstart import CYCLES as SEGSTART_CYCLES
from .softmax_driver import copy_cycles, softmax_widths
from .streams import UNITS, Streams, word_view
from .tokens import counter_for

FAR_PAST = -(1 << 40)
GENERAL_START_CYCLES = SEGSTART_CYCLES + 2   # start cycle, the unit's cycles, the table write


class TimingError(ValueError):
    """A program the model cannot time: a deadlock."""


@dataclass
class GemmTiming:
    taken: int
    first_issue: int | None
    last_issue: int | None
    last_write: int | None
    terms: int
    tiles: int


@dataclass
class TimingResult:
    cycles: int
    ends: dict[str, int]                       # END cycle per unit
    gemms: list[GemmTiming] = field(default_factory=list)
    load_busy: int = 0                         # cycles LOAD instructions were running
    store_busy: int = 0
    softmax_busy: int = 0                      # cycles SOFTMAX instructions held the COMPUTE unit


def _general_starts(segments) -> int:
    count, end = 0, None
    for s, seg in enumerate(segments):
        if seg.j_start != 0 and (s == 0 or seg.j_start != end):
            count += 1
        end = seg.j_start + seg.j_len
    return count


class _Compute:
    """The COMPUTE unit's lanes and constant staging, carried from one GEMM to the next."""

    def __init__(self, params: CoreParams):
        self.p = params
        self.lane_last = FAR_PAST           # L of the last decided job
        self.prev_start = None              # C of the last decided job, and when its reads stop
        self.prev_read_span = 0             # conflicting with the next segment's sums (C + span)
        self.prev_last_issue = FAR_PAST     # E of the previous segment
        self.drained = 0
        self.staging_free = 0               # earliest prefetch begin allowed by the previous block

    def gemm(self, t0: int, inst: Gemm, loops: DescLoops, segments: list[Segment]) -> tuple[GemmTiming, int, int, int]:
        """Returns (timing, cycle the unit is free again, signal_prev cycle, signal_next cycle)."""
        p = self.p
        rows = p.rows
        nsw = desc_words(loops.n_seg, p.config.bus_bits, loops.lookup_steps) - DESC_FIXED_WORDS
        arm = t0 + 4 + nsw
        y = t0 + 5 + nsw + GENERAL_START_CYCLES * _general_starts(segments)
        if inst.n_batch * loops.n_ob * inst.n_rb == 0:
            z = max(y + 1, self.drained)
            return GemmTiming(t0, None, None, None, 0, 0), z + 1, z, z

        raw, uses_y = bool(loops.raw), bool(loops.uses_y)
        out_pass = rows * output_row_cycles(p, raw, loops.out_width)
        window = read_window(p, raw, uses_y, loops.out_width)
        combine = rows * (2 if uses_y else 1)
        wait = max(0, p.output_delay - rows)
        delay = p.out_write_delay + p.ODD_LAG
        terms = [max(s.j_len, 1) for s in segments]
        last_seg = len(segments) - 1

        t = y + 1
        first_issue = None
        last_write = None
        for g in range(inst.n_batch * loops.n_ob):
            begin = max(arm + 1 if g == 0 else FAR_PAST, self.staging_free)
            ready = begin + p.slot_reads + 1
            block_first = lane_taken = None
            for rb in range(inst.n_rb):
                for s, n in enumerate(terms):
                    f = max(t, ready) if rb == 0 and s == 0 else t
                    if rb == 0 and s == 0:
                        block_first = f
                    if first_issue is None:
                        first_issue = f
                    e = max(f + n - 1, self.prev_last_issue + rows)
                    if self.prev_start is not None:
                        e = max(e, self.prev_start, self.prev_start + self.prev_read_span - p.SUM_LANDING)
                    t = e + 1
                    # the segment's job in the lanes
                    c = max(e + p.RECORD_DELAY, self.lane_last) + 1
                    if raw:
                        last, output = c + out_pass - 1, True
                    else:
                        if s == last_seg:
                            q = c + combine + wait
                            last, output = q + out_pass - 1, True
                            if rb == 0:
                                lane_taken = q
                        else:
                            last, output = c + combine - 1, False
                    self.prev_start, self.prev_read_span, self.lane_last = c, window, last
                    self.prev_last_issue = e
                    if output:
                        last_write = last + delay
                        self.drained = last_write + 1
            self.staging_free = max(block_first + p.DECODE_AT, lane_taken + 1 if lane_taken is not None else FAR_PAST)
        last_issue = t - 1
        tiles = inst.n_batch * loops.n_ob * inst.n_rb
        timing = GemmTiming(t0, first_issue, last_issue, last_write, tiles * sum(terms), tiles)
        return timing, last_issue + 1, last_issue, last_write


def _decode_gemm(param: np.ndarray, inst: Gemm, config: CoreConfig) -> tuple[DescLoops, list[Segment]]:
    words = word_view(param, config)
    base = inst.desc_addr

    def bits(word: int, lo: int, width: int) -> int:
        return (int.from_bytes(words[word % config.param_words].tobytes(), "little") >> lo) & ((1 << width) - 1)

    loops = DescLoops.decode(bits(base, 0, DESC_WORD_BITS))
    spw = config.bus_bits // SLOT_BITS
    segments = [Segment.decode(bits(base + DESC_FIXED_WORDS + s // spw, (s % spw) * SLOT_BITS, SLOT_BITS))
                for s in range(loops.n_seg)]
    return loops, segments


def run_timing(config: CoreConfig, streams: Streams, memory: np.ndarray) -> TimingResult:
    p = CoreParams(config)
    streams.check(config)
    programs = {u: streams.decoded(u) for u in UNITS}
    mem_words = word_view(np.asarray(memory, np.uint8), config)
    param = np.zeros(config.param_words * config.bus_bytes, np.uint8)
    param_words = word_view(param, config)

    signals: dict[str, list[int]] = defaultdict(list)
    taken_tokens: dict[str, int] = defaultdict(int)
    pc = {u: 0 for u in UNITS}
    fetch = {u: 2 for u in UNITS}         # F1: earliest take of the unit's next instruction
    free = {u: 0 for u in UNITS}
    ends: dict[str, int] = {}
    compute = _Compute(p)
    result = TimingResult(0, ends)

    def token_time(unit: str, inst) -> int | None:
        """Earliest take allowed by the waits (T1); None while a producer has not signalled yet."""
        at = 0
        for flag in ("wait_prev", "wait_next"):
            counter = counter_for(unit, flag)
            if counter is None or not getattr(inst, flag):
                continue
            k = taken_tokens[counter]
            if k >= len(signals[counter]):
                return None
            at = max(at, signals[counter][k] + 1)
        return at

    def take(unit: str, inst) -> None:
        for flag in ("wait_prev", "wait_next"):
            counter = counter_for(unit, flag)
            if counter is not None and getattr(inst, flag):
                taken_tokens[counter] += 1

    def signal(unit: str, inst, at: dict) -> None:
        for flag in ("signal_prev", "signal_next"):
            counter = counter_for(unit, flag)
            if counter is not None and getattr(inst, flag):
                insort(signals[counter], at[flag])   # a counter counts tokens, whichever came first

    def step(unit: str) -> bool:
        program = programs[unit]
        if pc[unit] >= len(program):
            return False
        inst = program[pc[unit]]
        tokens = token_time(unit, inst)
        if tokens is None:
            return False
        t = max(fetch[unit], free[unit], tokens)
        op = inst.opcode
        if unit == "compute" and (op in (Opcode.END, Opcode.SOFTMAX)
                                   or (op == Opcode.SYNC and (inst.signal_prev or inst.signal_next))):
            t = max(t, compute.drained)                                   # C6
        take(unit, inst)
        fetch[unit] = t + 2
        if op == Opcode.END:
            ends[unit] = t
            pc[unit] = len(program)
            return True
        if op in (Opcode.LOAD, Opcode.STORE):
            beats = inst.rows * inst.row_words
            if not beats:
                done = t + 1
            elif op == Opcode.LOAD:
                done = t + config.mem_read_latency + beats                # L1
            else:
                done = t + 2 + beats + config.mem_write_latency           # S1
            if op == Opcode.LOAD and beats and inst.buffer != Buffer.OUT:
                _copy_rows(param_words if inst.buffer == Buffer.PARAM else None, mem_words, inst)
            free[unit] = done + 1
            signal(unit, inst, {"signal_prev": done, "signal_next": done})
            if op == Opcode.LOAD:
                result.load_busy += done - t + 1
            else:
                result.store_busy += done - t + 1
        elif op == Opcode.GEMM:
            loops, segments = _decode_gemm(param, inst, config)
            timing, unit_free, sig_prev, sig_next = compute.gemm(t, inst, loops, segments)
            result.gemms.append(timing)
            free[unit] = unit_free
            signal(unit, inst, {"signal_prev": sig_prev, "signal_next": sig_next})
        elif op == Opcode.SOFTMAX:                                        # X1
            done = t + 1
            if inst.n_rows and inst.keys:
                done = t + 2 + copy_cycles(config, inst) + row_cycles(inst.keys, inst.n_rows, softmax_widths(config)) \
                    + FEED_LATENCY                                        # X2
            result.softmax_busy += done - t + 1
            free[unit] = done + 1
            signal(unit, inst, {"signal_prev": done, "signal_next": done})
        else:                                                             # SYNC
            free[unit] = t + 1
            signal(unit, inst, {"signal_prev": t, "signal_next": t})
        pc[unit] += 1
        return True

    while not all(pc[u] >= len(programs[u]) for u in UNITS):
        progressed = False
        for unit in UNITS:
            while step(unit):
                progressed = True
        if not progressed:
            stuck = [f"{u} at instruction {pc[u]}" for u in UNITS if pc[u] < len(programs[u])]
            raise TimingError(f"deadlock: {', '.join(stuck)} wait for tokens that never come")
    result.cycles = max(ends.values()) + 1
    return result


def _copy_rows(target, memory_words: np.ndarray, inst: Transfer) -> None:
    """What a LOAD writes into PARAM (the only buffer whose contents the timing depends on)."""
    if target is None:
        return
    for r in range(inst.rows):
        for w in range(inst.row_words):
            buf = (inst.buf_addr + r * inst.buf_stride + w) % target.shape[0]
            ext = inst.ext_addr + r * inst.ext_stride + w
            if ext < memory_words.shape[0]:
                target[buf] = memory_words[ext]

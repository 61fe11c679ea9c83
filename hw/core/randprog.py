"""Random but valid core programs, for comparing the RTL with ``hw.fsim`` and ``timing``.

``random_program(config, rng)`` builds a double-buffered pipeline of *jobs*: each job loads its ACT and
WGT codes into one half of those buffers, runs one to three random GEMMs whose outputs go to one half
of OUT, and stores them. The token flags follow the usual scheme (a job waits for the half it reuses
to be freed / stored two jobs earlier), sometimes on SYNC instructions instead of the instructions
themselves. Every GEMM draws its mode, output width, raw or requantized output, loop counts, strides
(negative ones too), segments (contiguous, gapped, overlapping, empty, starting anywhere), column
blocks at any slot alignment and constants; transfers draw their row shapes. Values stay inside what
the hardware defines: zero points are codes, shifts are 17..78, accumulators fit their registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..fsim.layout import Descriptor, pack_codes, pack_descriptor
from .config import CoreConfig
from .isa import (LOOKUP_VALUE_BITS, Buffer, ColumnSlot, DescActStrides, DescLoops, DescOtherStrides, Gemm,
                  Instruction, LookupStep, Mode, Opcode, Segment, Transfer, element_bits)
from .params import CoreParams
from .streams import Streams

NO_FLAGS = dict(wait_prev=0, wait_next=0, signal_prev=0, signal_next=0)


@dataclass
class RandomProgram:
    streams: Streams
    memory: np.ndarray
    gemms: list = field(default_factory=list)     # (Gemm, Descriptor) per GEMM, for failure reports


def _transfer(op, buffer, buf_addr, ext_addr, rows, row_words, ext_stride, buf_stride, **flags) -> Transfer:
    f = dict(NO_FLAGS)
    f.update(flags)
    return Transfer(opcode=op, buffer=buffer, buf_addr=buf_addr, ext_addr=ext_addr, rows=rows, row_words=row_words,
                    ext_stride=ext_stride, buf_stride=buf_stride, **f)


def _span(base: int, terms) -> tuple[int, int]:
    """Min and max of base + sum(stride * index) over index in [0, n)."""
    lo = hi = base
    for stride, n in terms:
        lo += min(0, stride * (n - 1))
        hi += max(0, stride * (n - 1))
    return lo, hi


class _Builder:
    def __init__(self, config: CoreConfig, rng: np.random.Generator):
        self.cfg, self.rng, self.p = config, rng, CoreParams(config)
        self.param_entries: dict[int, int] = {}     # PARAM slot index -> 128-bit value
        self.param_next = 0                          # next free PARAM word

    # ---- PARAM allocation ------------------------------------------------------------------------
    def put_words(self, data: np.ndarray) -> int:
        spw = self.p.slots_per_word
        words = data.size // self.cfg.bus_bytes
        at = self.param_next
        for i in range(words * spw):
            chunk = data[i * 16:(i + 1) * 16]
            self.param_entries[at * spw + i] = int.from_bytes(chunk.tobytes(), "little")
        self.param_next += words
        return at

    def put_slots(self, slots: list[ColumnSlot], misalign: int) -> int:
        spw = self.p.slots_per_word
        first = self.param_next * spw + misalign
        for i, s in enumerate(slots):
            self.param_entries[first + i] = s.encode()
        self.param_next += -(-(misalign + len(slots)) // spw)
        return first

    def param_image(self) -> np.ndarray:
        out = np.zeros(self.cfg.param_words * self.cfg.bus_bytes, np.uint8)
        for slot, value in self.param_entries.items():
            out[slot * 16:(slot + 1) * 16] = np.frombuffer(value.to_bytes(16, "little"), np.uint8)
        assert self.param_next <= self.cfg.param_words
        return out[:max(self.param_next, 1) * self.cfg.bus_bytes]

    def lookup(self, q_lo: int, q_hi: int) -> tuple[tuple[LookupStep, ...], int, int]:
        """Random lookup steps (often as many as the core takes) and the clamp bounds narrowed to the
        thresholds' width; thresholds fall anywhere in the bounds, on them and one past the top."""
        rng, bound = self.rng, 1 << (LOOKUP_VALUE_BITS - 2)
        q_lo, q_hi = max(q_lo, -bound), min(q_hi, bound - 1)
        steps = []
        top = self.cfg.lookup_steps
        for _ in range(top if rng.random() < 0.4 else int(rng.integers(1, top + 1))):
            kind = rng.random()
            t = (q_lo if kind < 0.1 else q_hi + 1 if kind < 0.2 else q_hi if kind < 0.3
                 else int(rng.integers(q_lo, q_hi + 1)))
            steps.append(LookupStep(threshold=t, down=int(rng.random() < 0.4)))
        return tuple(steps), q_lo, q_hi

    # ---- one GEMM ----------------------------------------------------------------------------------
    def gemm(self, act_half: tuple[int, int], wgt_half: tuple[int, int], out_room: tuple[int, int]):
        """A random GEMM reading codes inside ``act_half`` (code addresses) and WGT vectors inside
        ``wgt_half``, writing OUT words inside ``out_room``; None if it does not fit."""
        cfg, rng, p = self.cfg, self.rng, self.p
        modes = [Mode.MAC] + [m for m, f in ((Mode.HLUQ, "hluq"), (Mode.AGQ, "agq")) if f in cfg.formats]
        mode = Mode(int(rng.choice(modes)))
        raw = mode == Mode.MAC and rng.random() < 0.3
        n_batch, n_ob, n_rb = (int(v) for v in rng.integers(1, 4, 3))
        n_c, n_i, n_d = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        total = n_c * n_i * n_d
        top = (1 << cfg.act_bits) - 1

        tau_log2 = int(rng.integers(0, 3)) if mode == Mode.AGQ else 0
        # Without uses_y the lanes read X only: a shift-mode segment then picks X's or Y's terms (y_terms).
        if not cfg.y_accumulators:
            uses_y = 0
        else:
            uses_y = int(rng.random() < 0.2) if mode == Mode.MAC else int(rng.random() < 0.7)
        split = mode != Mode.MAC and not uses_y
        if raw:
            spans = [(int(rng.integers(0, total)), None)]
        elif mode == Mode.AGQ and tau_log2 == 2:
            spans = [(0, 0), (0, 1)] * (2 if split and cfg.max_segments >= 4 and rng.random() < 0.5 else 1)
        else:
            n_seg = int(rng.integers(1, min(cfg.max_segments, 4) + 1))
            spans = [(None, 0)] * n_seg
        segments = []
        for s, (start, rp) in enumerate(spans):
            kind = rng.random()
            if start is None:
                if s and kind < 0.6:          # contiguous with the previous
                    prev = segments[-1]
                    start = min(prev.j_start + prev.j_len, total - 1)
                else:
                    start = 0 if kind < 0.8 else int(rng.integers(0, total))
            length = int(rng.integers(0 if rng.random() < 0.1 else 1, total - start + 1))
            zp = int(rng.integers(0, top + 1))
            segments.append(Segment(j_start=start, j_len=length, zero_point=zp, residue_pass=rp or 0,
                                    m_x=int(rng.integers(1, 1 << 12)), m_y=int(rng.integers(1, 1 << 12)),
                                    y_terms=int(split and rng.random() < 0.5)))
        if raw:
            segments[0] = replace(segments[0], j_start=0, j_len=total) if rng.random() < 0.5 else segments[0]

        e_log2 = int(rng.choice([2, 3])) if raw else int(rng.integers(0, 4))
        bits = element_bits(e_log2)
        wpr = p.out_words_per_row(e_log2)
        per_word = p.rows_per_out_word(e_log2)
        packed = int(per_word > 1 and rng.random() < 0.6)
        unit = per_word if packed else 1          # OUT addresses per word
        q_lo, q_hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if rng.random() < 0.3:
            q_lo, q_hi = 0, (1 << min(bits, 8)) - 1
        lookup = ()
        if cfg.lookup_steps and not raw and rng.random() < 0.6:
            lookup, q_lo, q_hi = self.lookup(q_lo, q_hi)
        shift_cap = cfg.y_shift_limit if uses_y else cfg.max_shift      # Y's terms are narrower
        levels = int(rng.integers(1, min(top, shift_cap + 1) + 1)) if mode == Mode.HLUQ else 0
        q_shift = int(rng.integers(0, min(shift_cap, 6) + 1)) if mode == Mode.AGQ else 0
        loops = DescLoops(mode=int(mode), raw=int(raw), out_width=e_log2, tau_log2=tau_log2, max_shift=q_shift,
                          zero_code=int(rng.integers(0, top + 1)), log_levels=levels, n_seg=len(segments),
                          uses_y=uses_y, q_min=q_lo, q_max=q_hi, n_ob=n_ob,
                          n_c=n_c, n_i=n_i, n_d=n_d, packed=packed, lookup_steps=len(lookup),
                          lookup_base=int(rng.integers(-256, 256)) if lookup else 0)

        # ACT strides (some negative) and a base that keeps every code inside the half
        strides = {k: int(rng.integers(-3, 8)) for k in ("b", "rb", "ob", "c", "i", "d")}
        if rng.random() < 0.5:
            strides["rb"] = cfg.rows
        lo, hi = _span(0, [(strides[k], n) for k, n in (("b", n_batch), ("rb", n_rb), ("ob", n_ob), ("c", n_c),
                                                          ("i", n_i), ("d", n_d))])
        hi += cfg.rows - 1
        room = act_half[1] - act_half[0] - (hi - lo)
        if room <= 0:
            return None
        act_base = act_half[0] - lo + int(rng.integers(0, room))

        wgt_ob = total if rng.random() < 0.7 else int(rng.integers(-total, 2 * total))
        wgt_b = int(rng.choice([0, total * n_ob, int(rng.integers(-total, 3 * total))]))
        wlo, whi = _span(0, [(wgt_b, n_batch), (wgt_ob, n_ob), (1, total)])
        room = wgt_half[1] - wgt_half[0] - (whi - wlo)
        if room <= 0:
            return None
        wgt_base = wgt_half[0] - wlo + int(rng.integers(0, room))

        dense = n_rb * cfg.rows * wpr
        out_row = wpr if rng.random() < 0.8 else int(rng.integers(1, wpr + 2))
        out_rb = cfg.rows * out_row
        out_ob = dense if rng.random() < 0.8 else int(rng.integers(-dense, 2 * dense))
        out_b = dense * n_ob if rng.random() < 0.8 else int(rng.integers(-dense, 2 * dense * n_ob))
        olo, ohi = _span(0, [(out_b, n_batch), (out_ob, n_ob), (out_rb, n_rb), (out_row, cfg.rows)])
        ohi += wpr - 1
        room = (out_room[1] - out_room[0]) * unit - (ohi - olo)
        if room <= 0:
            return None
        out_base = out_room[0] * unit - olo + int(rng.integers(0, room))

        col_ob = cfg.cols if rng.random() < 0.6 else int(rng.integers(0, 2 * cfg.cols))
        col_b = int(rng.choice([0, cfg.cols * n_ob, int(rng.integers(0, 3 * cfg.cols))]))
        n_slots = col_b * (n_batch - 1) + col_ob * (n_ob - 1) + cfg.cols
        wtop = (1 << cfg.weight_bits) - 1
        term_bits = cfg.weight_bits + {Mode.MAC: cfg.act_bits, Mode.HLUQ: max(levels, cfg.act_bits),
                                       Mode.AGQ: q_shift + 1}[mode]
        typical = (1 << (term_bits + 12)) * max(total, 1)
        slots = []
        for _ in range(n_slots):
            shift = int(np.clip(typical.bit_length() + 31 - min(bits, 12) + rng.integers(-3, 3), 17, 78))
            slots.append(ColumnSlot(zero_point=int(rng.integers(0, wtop + 1)), bias=int(rng.integers(-2**30, 2**30)),
                                    multiplier=int(rng.integers(2**30, 2**31)), shift=shift,
                                    out_zero_point=int(rng.integers(-40, 40))))
        other = DescOtherStrides(wgt_b=wgt_b, wgt_ob=wgt_ob, out_b=out_b, out_ob=out_ob, out_rb=out_rb, out_row=out_row,
                                 col_b=col_b, col_ob=col_ob)
        desc = Descriptor(loops, DescActStrides(**strides), other, tuple(segments), lookup)
        empty = rng.random() < 0.05
        inst = Gemm(opcode=Opcode.GEMM, **NO_FLAGS, desc_addr=0, act_base=act_base, wgt_base=wgt_base,
                    out_base=out_base, col_base=0, n_batch=n_batch, n_rb=0 if empty else n_rb)
        written = set() if empty else {
            (out_base + bi * out_b + oi * out_ob + ri * out_rb + r * out_row + w) // unit
            for bi in range(n_batch) for oi in range(n_ob) for ri in range(n_rb) for r in range(cfg.rows)
            for w in range(wpr)}
        return inst, desc, slots, written


def random_program(config: CoreConfig, rng: np.random.Generator, jobs: int | None = None) -> RandomProgram:
    cfg, p = config, CoreParams(config)
    b = _Builder(cfg, rng)
    jobs = int(rng.integers(1, 5)) if jobs is None else jobs
    halves = {"act": cfg.act_words // 2, "wgt": cfg.wgt_words // 2, "out": cfg.out_words // 2}

    plans = []
    for j in range(jobs):
        h = j % 2
        act_half = (h * halves["act"] * p.codes_per_word, (h + 1) * halves["act"] * p.codes_per_word)
        wgt_half = (h * halves["wgt"] * p.vectors_per_word, (h + 1) * halves["wgt"] * p.vectors_per_word)
        gemms, out_used = [], h * halves["out"]
        for _ in range(int(rng.integers(1, 4))):
            made = None
            for _attempt in range(20):
                made = b.gemm(act_half, wgt_half, (out_used, (h + 1) * halves["out"]))
                if made is not None:
                    break
            if made is None:
                continue
            inst, desc, slots, written = made
            if b.param_next + desc.words(cfg.bus_bits) + len(slots) // p.slots_per_word + 2 > cfg.param_words:
                continue
            desc_at = b.put_words(pack_descriptor(desc, cfg.bus_bits))
            col_base = b.put_slots(slots, int(rng.integers(0, p.slots_per_word)))
            gemms.append((replace(inst, desc_addr=desc_at, col_base=col_base), desc, written))
            out_used = max(written) + 1 if written else out_used
        plans.append(gemms)
    return _assemble(cfg, p, b, rng, plans, halves)


def _rows_of(rng, words: int) -> tuple[int, int, int]:
    """A random row shape covering ``words`` words: (rows, row_words, ext gap between rows)."""
    row_words = int(rng.integers(1, words + 1)) if rng.random() < 0.7 else words
    rows = -(-words // row_words)
    return rows, row_words, int(rng.integers(0, 3)) if rng.random() < 0.5 else 0


def _runs(words: set[int]) -> list[tuple[int, int]]:
    """Maximal runs [start, end) of consecutive words."""
    out = []
    for w in sorted(words):
        if out and out[-1][1] == w:
            out[-1][1] = w + 1
        else:
            out.append([w, w + 1])
    return [tuple(r) for r in out]


def _emit(rng, stream: list, insts: list, waits: dict, signals: dict) -> None:
    """Append ``insts``; the first carries ``waits`` and the last ``signals``, each sometimes on a SYNC
    of its own instead (before / after)."""
    waits = {k: v for k, v in waits.items() if v}
    for i, inst in enumerate(insts):
        flags = {}
        if i == 0 and waits:
            if rng.random() < 0.3:
                stream.append(Instruction(Opcode.SYNC, **{**NO_FLAGS, **waits}))
            else:
                flags.update(waits)
        after = None
        if i == len(insts) - 1 and signals:
            if rng.random() < 0.3:
                after = Instruction(Opcode.SYNC, **{**NO_FLAGS, **signals})
            else:
                flags.update(signals)
        stream.append(replace(inst, **flags))
        if after is not None:
            stream.append(after)


def _assemble(cfg, p, b, rng, plans, halves) -> RandomProgram:
    bb = cfg.bus_bytes
    param_image = b.param_image()
    chunks = [param_image]
    ext_used = param_image.size // bb

    def place(data: np.ndarray, rows: int, row_words: int, gap: int) -> int:
        """Put ``data`` (whole words) in memory as rows with gaps; returns the first row's word."""
        nonlocal ext_used
        start = ext_used
        words = data.reshape(-1, bb)
        image = np.zeros(((rows - 1) * (row_words + gap) + row_words) * bb, np.uint8)
        for r in range(rows):
            part = words[r * row_words:(r + 1) * row_words]
            image[r * (row_words + gap) * bb:(r * (row_words + gap) + part.shape[0]) * bb] = part.reshape(-1)
        chunks.append(image)
        ext_used += image.size // bb
        return start

    load, compute, store = [], [], []
    load.append(_transfer(Opcode.LOAD, Buffer.PARAM, 0, 0, 1, param_image.size // bb, 0, 0))
    out_ext = []
    for j, gemms in enumerate(plans):
        h = j % 2
        # loads: the whole ACT and WGT half, in random row shapes
        transfers = []
        for buffer, bits in ((Buffer.ACT, cfg.act_bits), (Buffer.WGT, cfg.weight_bits)):
            name = "act" if buffer == Buffer.ACT else "wgt"
            n = halves[name]
            codes = rng.integers(0, 1 << bits, n * cfg.bus_bits // bits)
            top = (1 << bits) - 1
            codes[rng.random(codes.size) < 0.15] = top
            codes[rng.random(codes.size) < 0.1] = 0
            data = pack_codes(codes, bits, cfg.bus_bits)
            rows, row_words, gap = _rows_of(rng, n)
            padded = np.zeros(rows * row_words * bb, np.uint8)
            padded[:data.size] = data
            ext = place(padded, rows, row_words, gap)
            # rows past the half's end would spill into the other half: the last row is cut
            full, rest = divmod(n, row_words)
            transfers.append(_transfer(Opcode.LOAD, buffer, h * n, ext, full, row_words, row_words + gap, row_words))
            if rest:
                transfers.append(_transfer(Opcode.LOAD, buffer, h * n + full * row_words, ext + full * (row_words + gap),
                                           1, rest, 0, 0))
        transfers = [t for t in transfers if t.rows and t.row_words]
        _emit(rng, load, transfers, {"wait_next": int(j >= 2)}, {"signal_next": 1})

        # compute: the job's GEMMs, tokens on the first and last
        written = set()
        insts = []
        for inst, desc, words in gemms:
            written |= set(words)
            insts.append(inst)
            if rng.random() < 0.15:
                insts.append(Instruction(Opcode.SYNC, **NO_FLAGS))
        if not insts:    # a job with no GEMM still passes the tokens on
            insts = [Instruction(Opcode.SYNC, **NO_FLAGS)]
        waits = {"wait_prev": 1, "wait_next": int(j >= 2)}
        if rng.random() < 0.3 and insts[-1].opcode == Opcode.GEMM:
            # the freeing token with the GEMM, the computed one on a SYNC that waits for the outputs
            insts[-1] = replace(insts[-1], signal_prev=1)
            insts.append(Instruction(Opcode.SYNC, **NO_FLAGS))
            _emit(rng, compute, insts, waits, {"signal_next": 1})
        else:
            _emit(rng, compute, insts, waits, {"signal_prev": 1, "signal_next": 1})

        # stores: each run of written OUT words
        runs = _runs(written) or []
        base = ext_used
        chunks.append(np.zeros(halves["out"] * 2 * bb, np.uint8))
        ext_used += halves["out"] * 2
        out_ext.append(base)
        stores = [_transfer(Opcode.STORE, Buffer.OUT, lo, base + lo, 1, hi - lo, 0, 0) for lo, hi in runs]
        if not stores:
            stores = [Instruction(Opcode.SYNC, **NO_FLAGS)]
        _emit(rng, store, stores, {"wait_prev": 1}, {"signal_prev": 1})
    memory = np.concatenate(chunks + [np.zeros(4 * bb, np.uint8)])
    streams = Streams.assemble(load, compute, store)
    return RandomProgram(streams, memory, [(g[0], g[1]) for job in plans for g in job])

"""The functional model: the three units, their buffers and the token counters, run instruction by
instruction against a flat external memory (docs/core.md).

Each unit runs its stream in order. An instruction may start once every counter it waits on holds a
token; it then runs to completion in one step (LOAD/STORE copy their words, GEMM computes all its
tiles) and adds its signal tokens. The scheduler lets each unit run until it blocks, in the order
LOAD, COMPUTE, STORE, and repeats; with the hazard check on (the default), any two conflicting accesses
by different units must be ordered by tokens (``hazards``), which makes the result independent of
this order, i.e. equal to what the overlapping hardware computes.
"""

from __future__ import annotations

import numpy as np

from hw.core.config import CoreConfig
from hw.core.isa import Buffer, Gemm, IsaError, Opcode, Softmax, Transfer, relative_row_slots, softmax_row_words
from hw.core.streams import UNITS, Streams
from sw.ref.log_softmax import grid_bias, relative_bias, softmax_codes
from .gemm import GemmError, execute_gemm
from .hazards import AccessLog, Clocks, HazardError
from .layout import (bias_table_words, pack_codes, relative_terms_words, unpack_bias_table, unpack_codes,
                     unpack_relative_terms)

# Token counters by the stage pair they link: loaded (LOAD -> COMPUTE), freed (COMPUTE -> LOAD),
# computed (COMPUTE -> STORE), stored (STORE -> COMPUTE); see the flag table in hw/core/isa.py.
WAITS = {"load": {"wait_next": "freed"}, "compute": {"wait_prev": "loaded", "wait_next": "stored"},
         "store": {"wait_prev": "computed"}}
SIGNALS = {"load": {"signal_next": "loaded"}, "compute": {"signal_prev": "freed", "signal_next": "computed"},
           "store": {"signal_prev": "stored"}}
FLAGS = ("wait_prev", "wait_next", "signal_prev", "signal_next")
COUNTERS = ("loaded", "freed", "computed", "stored")


class FsimError(ValueError):
    """A program the core cannot run as written: deadlock, out-of-range access, race, overflow."""


class Machine:
    """Buffers, counters and program counters of one core run; ``run()`` executes it to the end."""

    def __init__(self, config: CoreConfig, streams: Streams, memory: np.ndarray, check_hazards: bool = True):
        memory = np.asarray(memory)
        if memory.dtype != np.uint8 or memory.ndim != 1 or memory.size % config.bus_bytes:
            raise FsimError(f"external memory must be a flat uint8 array of whole {config.bus_bits}-bit words, "
                            f"got {memory.dtype} {list(memory.shape)}")
        try:
            streams.check(config)
            self.programs = {unit: streams.decoded(unit) for unit in UNITS}
        except IsaError as exc:
            raise FsimError(str(exc)) from None
        self.config = config
        self.memory = memory.copy()
        bb = config.bus_bytes
        self.buffers = {Buffer.ACT: np.zeros(config.act_words * bb, np.uint8),
                        Buffer.WGT: np.zeros(config.wgt_words * bb, np.uint8),
                        Buffer.PARAM: np.zeros(config.param_words * bb, np.uint8),
                        Buffer.OUT: np.zeros(config.out_words * bb, np.uint8)}
        # the softmax path's tile store: row a holds the K scores of OUT row address a, once written
        self.score_store = np.zeros((config.softmax_store_rows, config.cols), np.int64) if config.softmax_lanes else None
        self.store_written = np.zeros(config.softmax_store_rows if config.softmax_lanes else 0, bool)
        self.bias_table = None      # the grid bias table [s, s] the path holds, once a SOFTMAX has loaded one
        self.pc = {unit: 0 for unit in UNITS}
        self.counters = {name: 0 for name in COUNTERS}
        self.gemms = 0
        self.clocks = Clocks() if check_hazards else None
        self.logs = None
        if check_hazards:
            self.logs = {buf: AccessLog(f"{buf.name} buffer", self.buffers[buf].size // bb, True) for buf in Buffer}
            self.logs["memory"] = AccessLog("external memory", self.memory.size // bb, False)

    # ---- scheduling -----------------------------------------------------------------------------
    def _flags(self, unit: str, index: int, inst) -> tuple[list[str], list[str]]:
        waits, signals = [], []
        for flag in FLAGS:
            if not getattr(inst, flag):
                continue
            table = WAITS[unit] if flag.startswith("wait") else SIGNALS[unit]
            if flag not in table:
                raise FsimError(f"{unit} instruction {index} ({Opcode(inst.opcode).name}) sets {flag}, which the "
                                f"{unit} unit does not have")
            (waits if flag.startswith("wait") else signals).append(table[flag])
        return waits, signals

    def _step(self, unit: str) -> bool:
        """Execute the unit's next instruction if its tokens are there; False if it cannot."""
        program, index = self.programs[unit], self.pc[unit]
        if index >= len(program):
            return False
        inst = program[index]
        waits, signals = self._flags(unit, index, inst)
        if any(self.counters[c] == 0 for c in waits):
            return False
        for counter in waits:
            self.counters[counter] -= 1
        clock = self.clocks.start(UNITS.index(unit), waits) if self.clocks else None
        where = f"{unit} instruction {index}"
        try:
            if inst.opcode == Opcode.LOAD:
                self._load(inst, clock, where)
            elif inst.opcode == Opcode.STORE:
                self._store(inst, clock, where)
            elif inst.opcode == Opcode.GEMM:
                self._gemm(inst, clock, where)
            elif inst.opcode == Opcode.SOFTMAX:
                self._softmax(inst, clock, where)
        except (GemmError, HazardError) as exc:
            raise FsimError(str(exc)) from None
        for counter in signals:
            self.counters[counter] += 1
            if self.clocks:
                self.clocks.signal(UNITS.index(unit), counter)
        self.pc[unit] = index + 1 if inst.opcode != Opcode.END else len(program)
        return True

    def run(self) -> np.ndarray:
        while not all(self.pc[u] >= len(self.programs[u]) for u in UNITS):
            progressed = False
            for unit in UNITS:
                while self._step(unit):
                    progressed = True
            if not progressed:
                raise FsimError(self._deadlock())
        return self.memory

    def _deadlock(self) -> str:
        stuck = []
        for unit in UNITS:
            index = self.pc[unit]
            if index >= len(self.programs[unit]):
                stuck.append(f"{unit} has ended")
                continue
            inst = self.programs[unit][index]
            waits, _ = self._flags(unit, index, inst)
            empty = [c for c in waits if self.counters[c] == 0]
            stuck.append(f"{unit} instruction {index} ({Opcode(inst.opcode).name}) waits for a '{empty[0]}' token")
        counts = ", ".join(f"{k}={v}" for k, v in self.counters.items())
        return f"deadlock: {'; '.join(stuck)} (counters {counts})"

    # ---- instructions ---------------------------------------------------------------------------
    def _transfer_words(self, inst: Transfer, buf_words: int, ext_words: int, where: str):
        r = np.arange(inst.rows, dtype=np.int64)[:, None]
        w = np.arange(inst.row_words, dtype=np.int64)[None, :]
        ext = (inst.ext_addr + r * inst.ext_stride + w).reshape(-1)
        buf = (inst.buf_addr + r * inst.buf_stride + w).reshape(-1)
        for name, words, limit in (("external memory", ext, ext_words), ("buffer", buf, buf_words)):
            if words.size and int(words.max()) >= limit:
                raise FsimError(f"{where}: {name} word {int(words.max())} is outside 0..{limit - 1}")
        return ext, buf

    @staticmethod
    def _copy_words(dst: np.ndarray, dst_words: np.ndarray, src: np.ndarray, src_words: np.ndarray, bb: int) -> None:
        """Word-by-word copy in order; where two source words land on one destination word the later wins."""
        if not dst_words.size:
            return
        _, last = np.unique(dst_words[::-1], return_index=True)
        keep = dst_words.size - 1 - last
        dst.reshape(-1, bb)[dst_words[keep]] = src.reshape(-1, bb)[src_words[keep]]

    def _load(self, inst: Transfer, clock, where: str) -> None:
        if inst.buffer == Buffer.OUT:
            raise FsimError(f"{where}: LOAD into the OUT buffer (LOAD fills ACT, WGT or PARAM)")
        buf = Buffer(inst.buffer)
        bb = self.config.bus_bytes
        target = self.buffers[buf]
        ext, words = self._transfer_words(inst, target.size // bb, self.memory.size // bb, where)
        if self.logs:
            self.logs["memory"].read(ext, 0, clock)
            self.logs[buf].write(words, 0, clock)
        self._copy_words(target, words, self.memory, ext, bb)

    def _store(self, inst: Transfer, clock, where: str) -> None:
        # STORE always reads OUT (docs/core.md gives it no buffer operand); its buffer field is ignored.
        bb = self.config.bus_bytes
        source = self.buffers[Buffer.OUT]
        ext, words = self._transfer_words(inst, source.size // bb, self.memory.size // bb, where)
        if self.logs:
            self.logs[Buffer.OUT].read(words, 2, clock)
            self.logs["memory"].write(ext, 2, clock)
        self._copy_words(self.memory, ext, source, words, bb)

    def _gemm(self, inst: Gemm, clock, where: str) -> None:
        cfg = self.config
        result = execute_gemm(cfg, inst, unpack_codes(self.buffers[Buffer.ACT], cfg.act_bits),
                              unpack_codes(self.buffers[Buffer.WGT], cfg.weight_bits), self.buffers[Buffer.PARAM],
                              where, track_words=bool(self.logs))
        if self.logs:
            self.logs[Buffer.PARAM].read(result.param_words, 1, clock)
            self.logs[Buffer.ACT].read(result.act_words, 1, clock)
            self.logs[Buffer.WGT].read(result.wgt_words, 1, clock)
            self.logs[Buffer.OUT].write(result.out_words, 1, clock)
        if result.store_rows is not None:
            self.score_store[result.store_rows] = result.store_scores
            self.store_written[result.store_rows] = True
            self.gemms += 1
            return
        bb = cfg.bus_bytes
        n = result.out_first_word.size
        width = result.out_bytes.shape[1]
        if n and width < bb:       # packed: row slots of ``width`` bytes, bb // width to a word
            slots = result.out_first_word * (bb // width) + result.out_part
            self._copy_words(self.buffers[Buffer.OUT], slots, result.out_bytes.reshape(-1), np.arange(n), width)
        elif n:
            wpr = width // bb
            words = (result.out_first_word[:, None] + np.arange(wpr)).reshape(-1)
            self._copy_words(self.buffers[Buffer.OUT], words, result.out_bytes.reshape(-1), np.arange(words.size), bb)
        self.gemms += 1

    def _softmax(self, inst: Softmax, clock, where: str) -> None:
        """Rows 0 .. n_rows - 1 of the store's tile, keys 0 .. keys - 1, into codes in OUT (docs/core.md)."""
        cfg = self.config
        if inst.n_rows > cfg.rows or inst.keys > cfg.softmax_max_keys:
            raise FsimError(f"{where}: SOFTMAX of {inst.n_rows} rows x {inst.keys} keys, the path holds "
                            f"{cfg.rows} x {cfg.softmax_max_keys}")
        if not inst.n_rows or not inst.keys:
            return
        key = np.arange(inst.keys)
        at = (key // cfg.cols)[None, :] * cfg.rows + np.arange(inst.n_rows)[:, None]
        if not self.store_written[at].all():
            raise FsimError(f"{where}: SOFTMAX reads tile rows no to_store GEMM has written")
        scores = self.score_store[at, key % cfg.cols]
        keys = np.ones(inst.keys, bool)        # key slots that are keys (a narrower grid's padding is not)
        if cfg.softmax_relative_side:
            bias = None
            if inst.bias_load:
                bias, keys = self._relative_terms(inst, clock, where)
            elif inst.bias_side or inst.query_row or inst.query_col:
                raise FsimError(f"{where}: SOFTMAX without relative terms (bias_load 0) and the grid fields set")
        else:
            bias = self._grid_bias(inst, clock, where) if inst.bias_side else None
        codes = np.zeros(scores.shape, np.int64)
        codes[:, keys] = softmax_codes(scores[:, keys], inst.multiplier, inst.shift, 1 << inst.tau_log2, inst.zero_code,
                                       inst.offset, None if bias is None else bias[:, keys])
        if int(codes.max()) >= 1 << cfg.act_bits:
            raise FsimError(f"{where}: zero code {inst.zero_code} does not fit {cfg.act_bits}-bit codes")
        row_words = softmax_row_words(inst.keys, cfg.act_bits, cfg.bus_bits)
        bb = cfg.bus_bytes
        data = np.concatenate([pack_codes(row, cfg.act_bits, cfg.bus_bits) for row in codes])
        words = inst.out_base + np.arange(inst.n_rows * row_words)
        if int(words[-1]) >= cfg.out_words:
            raise FsimError(f"{where}: OUT word {int(words[-1])} is outside 0..{cfg.out_words - 1}")
        if self.logs:
            self.logs[Buffer.OUT].write(words, 1, clock)
        self.buffers[Buffer.OUT].reshape(-1, bb)[words] = data.reshape(-1, bb)

    def _grid_bias(self, inst: Softmax, clock, where: str) -> np.ndarray:
        """The tile's grid bias [n_rows, keys] (isa.Softmax), after loading the table from PARAM if asked."""
        cfg, side = self.config, inst.bias_side
        first = inst.query_row * side + inst.query_col
        if not 0 < side <= cfg.softmax_bias_side:
            raise FsimError(f"{where}: SOFTMAX with a grid bias of side {side}, the path takes sides up to "
                            f"{cfg.softmax_bias_side} (softmax_bias_side)")
        if side < cfg.softmax_lanes or inst.keys != side * side or inst.query_col >= side \
                or first + inst.n_rows > side * side:
            raise FsimError(f"{where}: SOFTMAX of {inst.n_rows} rows x {inst.keys} keys from query "
                            f"({inst.query_row}, {inst.query_col}) is not a part of a {side} x {side} grid")
        if inst.bias_load:
            words = inst.bias_addr + np.arange(bias_table_words(side, cfg.bus_bits))
            if int(words[-1]) >= cfg.param_words:
                raise FsimError(f"{where}: bias table word {int(words[-1])} is outside PARAM 0..{cfg.param_words - 1}")
            if self.logs:
                self.logs[Buffer.PARAM].read(words, 1, clock)
            self.bias_table = unpack_bias_table(self.buffers[Buffer.PARAM], inst.bias_addr, side, cfg.bus_bits)
        elif self.bias_table is None or self.bias_table.shape[0] != side:
            raise FsimError(f"{where}: SOFTMAX with the grid bias of side {side}, and no SOFTMAX of this run has "
                            f"loaded a table of that side (bias_load)")
        return grid_bias(self.bias_table, first, inst.n_rows)

    def _relative_terms(self, inst: Softmax, clock, where: str) -> tuple[np.ndarray, np.ndarray]:
        """The tile's bias [n_rows, keys] from the relative-position terms the SOFTMAX copies, and which key
        slots are keys (isa.Softmax: rows of s slots, the last query_col of them padding)."""
        cfg, lanes = self.config, self.config.softmax_lanes
        side = relative_row_slots(cfg.softmax_relative_side, lanes, inst.bias_side)
        if inst.query_row or side > cfg.softmax_relative_side or inst.query_col >= lanes:
            raise FsimError(f"{where}: SOFTMAX with relative-position terms in rows of {side} key slots, "
                            f"{inst.query_col} of them padding, and query_row {inst.query_row} (the path takes rows "
                            f"of up to {cfg.softmax_relative_side} slots, fewer than {lanes} of them padding, "
                            f"query_row 0)")
        if inst.keys % side or inst.keys // side > side:
            raise FsimError(f"{where}: SOFTMAX with relative-position terms of {inst.keys} keys, not rows of {side} "
                            f"slots on a grid of at most {side} rows")
        words = inst.bias_addr + np.arange(relative_terms_words(inst.n_rows * side, cfg.bus_bits))
        if int(words[-1]) >= cfg.param_words:
            raise FsimError(f"{where}: relative term word {int(words[-1])} is outside PARAM 0..{cfg.param_words - 1}")
        if self.logs:
            self.logs[Buffer.PARAM].read(words, 1, clock)
        height, width = unpack_relative_terms(self.buffers[Buffer.PARAM], inst.bias_addr, inst.n_rows, side,
                                              cfg.bus_bits)
        slots = np.arange(inst.keys)
        return relative_bias(height, width)[:, :inst.keys], slots % side < side - inst.query_col


def run(config: CoreConfig, streams: Streams, memory: np.ndarray, *, check_hazards: bool = True) -> np.ndarray:
    """Execute ``streams`` on a core of ``config`` against external ``memory``; return the memory after
    the run (a new array; the argument is not changed).

    ``memory`` is a flat uint8 array of whole ``bus_bits`` words, little-endian (hw/core/streams.py). The
    buffers start zeroed. Semantics are docs/core.md's: LOAD/STORE copy word rows, GEMM follows the
    descriptor pseudo-code (MAC / HLUQ / AGQ row terms, segments combined by the lanes with m_x and m_y,
    raw X or requantized and clamped outputs written as OUT row vectors of 4/8/16/32-bit elements, a packed
    GEMM's several to a word), and
    the units synchronize only by the four token counters.

    Raises :class:`FsimError` (one line) on a deadlock (no unit can start its next instruction), an
    address outside a buffer or the memory, a malformed instruction or descriptor, a PE accumulator
    beyond ``pe_acc_bits`` or a lane accumulator beyond 48 bits, and, with ``check_hazards``, on two
    units touching one word without a token ordering them or a read of a buffer word nothing has
    written (the hardware's buffers are not initialised; see ``hw/fsim/hazards.py``).
    """
    return Machine(config, streams, memory, check_hazards).run()

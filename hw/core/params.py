"""What the RTL derives from a ``CoreConfig``: geometry, address widths and the fixed latencies.

Pure Python (no amaranth), because the cycle model (``timing.py``) reads the same latencies the RTL
is built with; ``tests/test_core_units.py`` checks them against the generated units.

The core generator accepts a subset of ``CoreConfig``: every buffer word, row vector, column vector
and constant slot is a power of two wide, so each "which word / which position" split is a bit slice
(no dividers), and the bus is at least 256 bits, so a descriptor's fixed 256-bit records fit one word.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import LANE_ACC_BITS, SLOT_BITS, CoreConfig, CoreConfigError
from .isa import DESC_FIXED_WORDS, DESC_WORD_BITS, Gemm, element_bits

LANE_B_BITS = 32          # lane multiplier's second operand: segment multipliers m_x, m_y (32 bits)
REQUANT_SHIFT_FLOOR = 16  # requantization floors the product by 2^16 at once (shift >= 17)
AXI_MAX_BURST = 256       # AXI4 INCR bursts
AXI_BOUNDARY_BYTES = 4096 # an AXI4 burst never crosses a 4 KiB boundary
TOKEN_BITS = 16           # token counters
REQUANT_ROW_CYCLES = 2    # a lane pair's two lanes take turns in their shared requantization tail


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _pieces(width: int, signed: bool) -> int:
    """Pieces ``hw.units.dsp_multiply`` cuts an operand into (17-bit low pieces, top piece keeps sign)."""
    top, offsets = (18 if signed else 17), [0]
    while width - offsets[-1] > top:
        offsets.append(offsets[-1] + 17)
    return len(offsets)


def lane_multiplier_latency() -> int:
    """Cycles of the lane's PipelinedMultiplier(signed(48), unsigned(32)): piece register + adder tree."""
    pieces = _pieces(LANE_ACC_BITS, True) * _pieces(LANE_B_BITS, False)
    return 1 + max(pieces - 1, 0).bit_length()


def lane_dsp_count() -> int:
    return _pieces(LANE_ACC_BITS, True) * _pieces(LANE_B_BITS, False)


@dataclass(frozen=True)
class CoreParams:
    """Geometry and timing constants of one generated core."""

    config: CoreConfig

    def __post_init__(self):
        c, problems = self.config, []
        if not _is_pow2(c.bus_bits) or c.bus_bits < DESC_WORD_BITS:
            problems.append(f"the core needs a power-of-two bus of at least {DESC_WORD_BITS} bits "
                            f"(a descriptor's fixed records are {DESC_WORD_BITS} bits), got {c.bus_bits}")
        if not (_is_pow2(c.rows) and _is_pow2(c.cols)) or c.rows < 2:
            problems.append(f"rows and cols must be powers of two, rows >= 2, got {c.rows}x{c.cols}")
        for name in ("act_words", "wgt_words", "out_words", "param_words", "prog_words"):
            if not _is_pow2(getattr(c, name)) or getattr(c, name) < 2:
                problems.append(f"{name} must be a power of two >= 2, got {getattr(c, name)}")
        if c.prog_words > 4096:
            problems.append(f"prog_words {c.prog_words} exceeds the register map's 4096-instruction windows")
        if not 1 <= c.max_segments <= 16:
            problems.append(f"max_segments must be 1..16, got {c.max_segments}")
        if not 1 <= c.max_shift <= 63:
            problems.append(f"max_shift must be 1..63, got {c.max_shift}")
        if not c.act_bits + c.weight_bits + 2 <= c.pe_acc_bits <= LANE_ACC_BITS:
            problems.append(f"pe_acc_bits must hold one product and at most {LANE_ACC_BITS}, got {c.pe_acc_bits}")
        if c.mem_read_latency < 2 or c.mem_write_latency < 1:
            problems.append("the simulation memory needs mem_read_latency >= 2 and mem_write_latency >= 1")
        out_base_bits = next(f.width for f in Gemm.LAYOUT if f.name == "out_base")
        if not problems and self.out_addr_bits > out_base_bits:
            problems.append(f"out_words {c.out_words} x {c.bus_bits // c.out_granule_bits} row slots per word need "
                            f"{self.out_addr_bits}-bit OUT addresses, a GEMM gives {out_base_bits}")
        if not problems and c.softmax_lanes and c.softmax_store_rows > 1 << self.out_addr_bits:
            problems.append(f"the softmax store's {c.softmax_store_rows} tile rows (softmax_max_keys / cols x rows) need "
                            f"OUT row addresses of {(c.softmax_store_rows - 1).bit_length()} bits, the core's have "
                            f"{self.out_addr_bits}")
        if problems:
            raise CoreConfigError("; ".join(problems))

    # ---- geometry ------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.config.rows

    @property
    def cols(self) -> int:
        return self.config.cols

    @property
    def codes_per_word(self) -> int:          # P: ACT codes per word
        return self.config.bus_bits // self.config.act_bits

    @property
    def vectors_per_word(self) -> int:        # WGT column vectors per word
        return self.config.vectors_per_wgt_word

    @property
    def slots_per_word(self) -> int:          # PARAM constant slots (and segments) per word
        return self.config.bus_bits // SLOT_BITS

    @property
    def slot_reads(self) -> int:
        """PARAM reads that bring the K constant slots of one column block (any slot alignment)."""
        return -(-self.cols // self.slots_per_word)

    @property
    def desc_fixed_words(self) -> int:
        return DESC_FIXED_WORDS

    def seg_words(self, n_seg: int) -> int:
        return -(-n_seg // self.slots_per_word)

    def out_words_per_row(self, out_width: int) -> int:
        return self.config.out_words_per_row(element_bits(out_width))

    def rows_per_out_word(self, out_width: int) -> int:
        return self.config.rows_per_out_word(element_bits(out_width))

    @property
    def out_addr_bits(self) -> int:
        """OUT addresses as GEMMs give them: words, or row slots of a packed GEMM (up to a granule each)."""
        return self.word_addr_bits["out"] + _log2(self.config.bus_bits // self.config.out_granule_bits)

    @property
    def max_out_words_per_row(self) -> int:
        return self.config.out_words_per_row(32)

    @property
    def has_shift_modes(self) -> bool:
        return bool({"hluq", "agq"} & set(self.config.formats))

    @property
    def has_y_sums(self) -> bool:
        """Whether the PEs keep a Y sum: only the shift modes fill one, and only cores with Y have it."""
        return self.has_shift_modes and self.config.y_accumulators

    # ---- address widths --------------------------------------------------------------------------
    @property
    def word_addr_bits(self) -> dict:
        c = self.config
        return {name: _log2(getattr(c, f"{name}_words")) for name in ("act", "wgt", "out", "param", "prog")}

    @property
    def act_code_addr_bits(self) -> int:
        return self.word_addr_bits["act"] + _log2(self.codes_per_word)

    @property
    def ext_byte_addr_bits(self) -> int:
        """AXI address: 28-bit word addresses of ``bus_bits`` words (``isa.Transfer.ext_addr``)."""
        return 28 + _log2(self.config.bus_bits // 8)

    @property
    def boundary_words(self) -> int:
        """Words between AXI 4 KiB boundaries (a burst stops at one)."""
        return max(AXI_BOUNDARY_BYTES // (self.config.bus_bits // 8), 1)

    @property
    def max_burst(self) -> int:
        return min(AXI_MAX_BURST, self.boundary_words)

    @property
    def read_outstanding(self) -> int:
        """Read bursts the LOAD unit keeps in flight: one more than the latency, so that the data
        stream never waits for a request (each burst is at least one beat)."""
        return self.config.mem_read_latency + 1

    # ---- fixed latencies (cycles; see timing.py for how they combine) ---------------------------
    FETCH_INTERVAL = 2     # an instruction taken at t: the next one can start at t + 2
    EXTRACT_STAGES = 3     # a term issued at t: buffer data at t + 1, its row vector registered at t + 3
    DECODE_AT = 1 + EXTRACT_STAGES   # ... decoded (row and column) at t + 4
    RECORD_DELAY = 7       # a segment's last term issued at t is known to the lane sequencer from t + 7
    SUM_LANDING = 7        # ... and row r of its sums is written to the lanes' memories at the end of t + 7 + r
    ODD_LAG = 1            # odd-numbered lanes run one cycle behind even ones (they share requantizers)
    LANE_OPERAND_STAGES = 2  # lane: operand read, then constants/bias, then the multiplier

    @property
    def lane_mul_latency(self) -> int:
        return lane_multiplier_latency()

    @property
    def acc_ready_delay(self) -> int:
        """A combine of row r issued at q has updated acc[r] for a read at q + this."""
        return self.LANE_OPERAND_STAGES + self.lane_mul_latency + 1

    REQUANT_STAGES = 3     # requantization tail: two shift stages, the rounding; then the clamp
    LOOKUP_STAGES = 2      # with an output lookup: the clamped value, then the threshold comparisons

    @property
    def tail_stages(self) -> int:
        """Registers of a lane pair's tail before its result enters the lane's out register."""
        return self.REQUANT_STAGES + (self.LOOKUP_STAGES if self.config.lookup_steps else 0)

    @property
    def output_delay(self) -> int:
        """An output pass starts this many cycles after its job's last combine pass starts, or R if
        more: its accumulators are complete (acc_ready_delay), and the previous output pass has used
        the column constants and clamp bounds this pass replaces (that pass ended at least
        REQUANT_ROW_CYCLES before this job started)."""
        last_use = self.ODD_LAG + self.LANE_OPERAND_STAGES + self.lane_mul_latency + self.tail_stages
        return max(self.acc_ready_delay, last_use - REQUANT_ROW_CYCLES)

    @property
    def out_write_delay(self) -> int:
        """An output row issued at q (an even lane's) writes its first OUT word at q + this + ODD_LAG
        (operand, constants, multiplier, the tail's registers, the result register)."""
        return self.LANE_OPERAND_STAGES + self.lane_mul_latency + self.tail_stages + 1


def output_row_cycles(params: CoreParams, raw: bool, out_width: int) -> int:
    """Cycles per row of an output pass: W words, and 2 for a requantized row (shared tail)."""
    words = params.out_words_per_row(out_width)
    return words if raw else max(REQUANT_ROW_CYCLES, words)


def read_window(params: CoreParams, raw: bool, uses_y: bool, out_width: int) -> int:
    """How many cycles after a job's start its last read of any sum row r comes, beyond r (the odd
    lanes' lag included)."""
    rows = params.rows
    if raw:
        span = (rows - 1) * (output_row_cycles(params, True, out_width) - 1)
    else:
        span = rows if uses_y else 0
    return span + params.ODD_LAG

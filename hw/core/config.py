"""Parameters of the programmable core, and the widths and capacities derived from them.

One generated design runs every quantized layer of a bundle: the compiler (``hw/compiler``) targets a
``CoreConfig`` and refuses, in one line, a layer whose codes, shifts, reduction or buffers exceed it.
The configuration is data: it round-trips through JSON and its digest names builds and programs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FORMATS = ("uniform", "cag", "hluq", "agq")
LANE_ACC_BITS = 48    # a lane's combined accumulator: the contract's |acc| < 2^47 plus sign
PROG_WORD_BITS = 128  # one instruction
SLOT_BITS = 128       # one per-column constant slot in the PARAM buffer
OUT_ELEMENT_BITS = (4, 8, 16, 32)
LANE_RAMS = ("block", "lut")
X_OUT_REGISTERS = ("pe", "column")
# fields added later, with the default that keeps old digests
LATER_FIELDS = {"y_accumulators": True, "lane_ram": "block", "lookup_steps": 0, "softmax_lanes": 0,
                "softmax_max_keys": 4096, "softmax_bias_side": 0, "softmax_relative_side": 0,
                "x_out_register": "pe", "y_max_shift": None}
SOFTMAX_SCORE_BITS = 16   # a QK^T for the softmax path writes 16-bit raw rows, a row in one OUT word
BIAS_BITS = 16            # a grid bias table's entries: signed, in the softmax's 2^-F log2 units
RELATIVE_TERM_BITS = 16   # SAM ViT's relative-position terms in PARAM: signed, in the softmax's 2^-F log2 units
RELATIVE_PAIR_BITS = 2 * RELATIVE_TERM_BITS   # a query's height and width term for one key row / column
MAX_BIAS_SIDE = 15        # a grid side in the SOFTMAX instruction's 4-bit fields
BIAS_ADDR_BITS = 10       # the SOFTMAX instruction's PARAM word address of its bias table
OUT_BASE_BITS = 14        # the SOFTMAX instruction's first OUT word


class CoreConfigError(ValueError):
    """A core configuration that cannot be built, in one line."""


@dataclass(frozen=True)
class CoreConfig:
    rows: int = 16            # R: PE rows, the output rows of one tile
    cols: int = 16            # K: PE columns, the output columns of one tile
    act_bits: int = 8         # widest row-operand code (activations, queries, post-softmax codes)
    weight_bits: int = 8      # widest column-operand code (weights, keys, values)
    bus_bits: int = 256       # external memory data width, and the word width of every buffer
    act_words: int = 4096     # ACT buffer depth in words
    wgt_words: int = 4096     # WGT buffer depth in words
    out_words: int = 2048     # OUT buffer depth in words
    param_words: int = 1024   # PARAM buffer depth in words (descriptors and per-column constants)
    prog_words: int = 1024    # instruction RAM depth of each of the three units
    max_shift: int = 31       # largest shift in the shift modes (HLUQ: L - 1, AGQ: Q)
    pe_acc_bits: int = 48     # PE accumulators X and Y (the lanes' combined accumulators hold 48 bits)
    max_segments: int = 8     # reduction segments of one GEMM (CAG groups, AGQ residue passes)
    formats: tuple[str, ...] = FORMATS
    # False: the PEs have X only. HLUQ and AGQ (tau >= 2) layers then take two segments where a core with
    # Y takes one (docs/core.md "Cores without Y"): longer GEMMs, but a PE a fifth smaller in LUTs and
    # nearly half in flip-flops, which is what a 256-PE array on the LFE5U-85F needs.
    y_accumulators: bool = True
    # Largest shift of a term into Y (None: max_shift), which sets the width of the PEs' Y term registers.
    # Y takes only shift terms: AGQ's odd residues (Q <= (2^bits - 2) / tau, 7 for 4-bit codes at tau 2) and
    # HLUQ's log path (L - 1). A layer whose Y terms would shift further takes the form of a core without Y
    # (two segments in X) instead.
    y_max_shift: int | None = None
    # Where the lanes' three rows-deep memories live: "block" spends 5 or 6 DP16KD per lane on a few
    # dozen words; "lut" puts them in LUT RAM next to the lane's logic, so the lanes' wide sums and
    # accumulators stop crossing the die to a block-RAM row (one of the hotspots of the larger cores'
    # placement, docs/board.md). Behaviour, cycles and the RTL's simulation are the same either way.
    lane_ram: str = "block"
    # Where a finished X sum waits for its column's OR-tree: "pe" in an out register of every PE (the
    # register's synchronous reset gates it, so the tree is a plain OR); "column" in one register per column
    # after a tree that gates each row's sum itself. Same cycles and values; "column" has R - 1 fewer
    # registers of pe_acc_bits per column, clocked every cycle, for about 0.4 LUT4 more per register left out
    # (docs/core.md "Narrow Y and X sums through a column register").
    x_out_register: str = "pe"
    # Steps of the output lookup (``isa.LookupStep``) a GEMM may use, 0: none. With n > 0 the lanes' shared
    # tails turn each clamped output into a code through n comparators, so a layer whose output the host
    # reads only through an elementwise GELU or ReLU can store the next layer's 4-bit codes instead of
    # 16-bit host codes (two more pipeline stages in every tail).
    lookup_steps: int = 0
    # Keys per beat of the on-chip softmax path (hw/softmax/path.py), 0: none. With P > 0 a QK^T may send its
    # raw rows to the path's tile store instead of OUT (``DescLoops.to_store``) and a SOFTMAX instruction
    # turns the stored tile into AGQ codes in OUT, so the scores never leave the chip
    # (docs/core.md "Softmax path"); rows of up to ``softmax_max_keys`` keys.
    softmax_lanes: int = 0
    softmax_max_keys: int = 4096
    # Largest side s of a query and key grid whose softmax the path takes with a grid bias (TinyViT's
    # attention biases: the logit of query (y, x) and key (y', x') gains T[|y - y'|][|x - x'|]), 0: none.
    # Each path lane then holds a copy of one head's table T, which a SOFTMAX copies from PARAM, an entry
    # per constant slot (docs/core.md "Grid bias").
    softmax_bias_side: int = 0
    # Side s of the query and key grid whose softmax the path takes with SAM ViT's decomposed relative-position
    # terms (the logit of query i and key (y, x) gains H_i[y] + W_i[x]), 0: none; excludes a grid bias. The
    # host computes each query's 2s terms from its codes; a SOFTMAX copies its tile's terms from PARAM into
    # the path's store, a (H, W) pair a cycle (docs/core.md "Relative positions").
    softmax_relative_side: int = 0
    mem_read_latency: int = 16   # simulation memory: cycles from an accepted read burst to its first beat
    mem_write_latency: int = 8   # simulation memory: cycles from a burst's last write beat to its response

    def __post_init__(self):
        object.__setattr__(self, "formats", tuple(self.formats))
        problems = []
        if self.rows < 1 or self.cols < 1:
            problems.append(f"PE array must be at least 1x1, got {self.rows}x{self.cols}")
        if self.act_bits not in (4, 8) or self.weight_bits not in (4, 8):
            problems.append(f"act_bits and weight_bits must be 4 or 8, got {self.act_bits}, {self.weight_bits}")
        for name, width in (("row vector", self.rows * self.act_bits), ("column vector", self.cols * self.weight_bits)):
            if self.bus_bits % width:
                problems.append(f"bus_bits {self.bus_bits} is not a multiple of the {name} ({width} bits)")
        if self.bus_bits % SLOT_BITS:
            problems.append(f"bus_bits {self.bus_bits} is not a multiple of a {SLOT_BITS}-bit constant slot")
        if not 0 <= self.lookup_steps <= 63:
            problems.append(f"lookup_steps must be 0..63 (a descriptor counts them in 6 bits), got {self.lookup_steps}")
        if self.lane_ram not in LANE_RAMS:
            problems.append(f"lane_ram must be one of {LANE_RAMS}, got {self.lane_ram!r}")
        if self.y_max_shift is not None and not 0 <= self.y_max_shift <= self.max_shift:
            problems.append(f"y_max_shift must be 0..max_shift {self.max_shift} (or null), got {self.y_max_shift}")
        if self.x_out_register not in X_OUT_REGISTERS:
            problems.append(f"x_out_register must be one of {X_OUT_REGISTERS}, got {self.x_out_register!r}")
        unknown = sorted(set(self.formats) - set(FORMATS))
        if unknown or "uniform" not in self.formats:
            problems.append(f"formats must include 'uniform' and come from {FORMATS}, got {self.formats}")
        if self.softmax_lanes:
            lanes, keys = self.softmax_lanes, self.softmax_max_keys
            if lanes & (lanes - 1) or self.cols % lanes:
                problems.append(f"softmax_lanes must be a power of two dividing cols {self.cols}, got {lanes}")
            elif keys < self.cols or keys % self.cols or keys >= 1 << 13:
                problems.append(f"softmax_max_keys must be a positive multiple of cols {self.cols} below 8192 (a "
                                f"SOFTMAX counts keys in 13 bits), got {keys}")
            if self.rows >= 1 << 7:
                problems.append(f"a SOFTMAX counts a tile's rows in 7 bits, the array has {self.rows}")
            if self.cols * SOFTMAX_SCORE_BITS > self.bus_bits:
                problems.append(f"the softmax path takes a tile row of {self.cols} {SOFTMAX_SCORE_BITS}-bit scores "
                                f"in one cycle, one {self.bus_bits}-bit word: cols must be at most "
                                f"{self.bus_bits // SOFTMAX_SCORE_BITS}")
            if self.out_words > 1 << OUT_BASE_BITS:
                problems.append(f"a SOFTMAX addresses {1 << OUT_BASE_BITS} OUT words, out_words is {self.out_words}")
        if self.softmax_bias_side:
            side = self.softmax_bias_side
            if not self.softmax_lanes:
                problems.append("softmax_bias_side needs the softmax path (softmax_lanes > 0)")
            elif not self.softmax_lanes <= side <= MAX_BIAS_SIDE:
                problems.append(f"softmax_bias_side must be {self.softmax_lanes}..{MAX_BIAS_SIDE} (at least the "
                                f"path's lanes, a table side in 4 bits), got {side}")
            elif side * side > self.softmax_max_keys:
                problems.append(f"softmax_bias_side {side}: its {side * side} keys exceed softmax_max_keys")
        if self.softmax_relative_side:
            side = self.softmax_relative_side
            if not self.softmax_lanes:
                problems.append("softmax_relative_side needs the softmax path (softmax_lanes > 0)")
            elif side % self.softmax_lanes or side * side > self.softmax_max_keys:
                problems.append(f"softmax_relative_side must be a multiple of softmax_lanes {self.softmax_lanes} "
                                f"whose {side * side} keys fit softmax_max_keys {self.softmax_max_keys}, got {side}")
            if self.softmax_bias_side:
                problems.append("a softmax path adds either a grid bias or relative-position terms, not both")
            if self.bus_bits % RELATIVE_PAIR_BITS:
                problems.append(f"bus_bits {self.bus_bits} is not a multiple of a {RELATIVE_PAIR_BITS}-bit term pair")
        if (self.softmax_bias_side or self.softmax_relative_side) and self.param_words > 1 << BIAS_ADDR_BITS:
            problems.append(f"a SOFTMAX addresses its bias table or relative terms in {1 << BIAS_ADDR_BITS} PARAM "
                            f"words, param_words is {self.param_words}")
        if problems:
            raise CoreConfigError("; ".join(problems))

    # ---- derived -------------------------------------------------------------------------------
    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def y_shift_limit(self) -> int:
        """Largest shift a term into Y may have (``y_max_shift``, or ``max_shift``)."""
        return self.max_shift if self.y_max_shift is None else self.y_max_shift

    def y_takes(self, shift: int) -> bool:
        """Whether a layer whose Y terms shift by up to ``shift`` can put them in Y."""
        return self.y_accumulators and shift <= self.y_shift_limit

    @property
    def codes_per_act_word(self) -> int:
        return self.bus_bits // self.act_bits

    @property
    def vectors_per_wgt_word(self) -> int:
        """Column-operand vectors (``cols`` codes each) per WGT word."""
        return self.bus_bits // (self.cols * self.weight_bits)

    @property
    def slots_per_param_word(self) -> int:
        return self.bus_bits // SLOT_BITS

    def out_words_per_row(self, element_bits: int) -> int:
        """OUT words that one row of ``cols`` outputs of ``element_bits`` each occupies."""
        return -(-self.cols * element_bits // self.bus_bits)

    def rows_per_out_word(self, element_bits: int) -> int:
        """Rows of ``element_bits`` elements one OUT word holds in a packed GEMM (1: a row fills a word or
        more, or does not divide it)."""
        row = self.cols * element_bits
        return self.bus_bits // row if row < self.bus_bits and self.bus_bits % row == 0 and row % 8 == 0 else 1

    @property
    def out_granule_bits(self) -> int:
        """Width of one OUT write enable: the narrowest row a packed GEMM writes."""
        return self.bus_bits // max(self.rows_per_out_word(e) for e in OUT_ELEMENT_BITS)

    @property
    def softmax_store_rows(self) -> int:
        """Tile rows the softmax path's store holds: R rows of every key block (its OUT row addresses)."""
        return self.softmax_max_keys // self.cols * self.rows

    @property
    def bus_bytes(self) -> int:
        return self.bus_bits // 8

    # ---- data ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        # Fields added after configurations were committed are left out at their default, so the digests
        # that name committed builds, programs and reports stay what they were.
        for name, default in LATER_FIELDS.items():
            if out[name] == default:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = "core config") -> "CoreConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CoreConfigError(f"{where}: unknown field '{unknown[0]}' (fields: {', '.join(sorted(known))})")
        try:
            return cls(**data)
        except TypeError as exc:
            raise CoreConfigError(f"{where}: {exc}") from None

    @property
    def digest(self) -> str:
        """Short content digest: names builds and marks the programs compiled for this core."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Named configurations: the one that runs every layer of both LiteMedSAM bundles (8-bit codes), and the
# 4-bit one sized for the LFE5U-85F: its PE accumulators are 32 bits, which every W4A4 layer needs (the
# decoder's token-to-image A.V reaches 31 signed bits) and the 85F's LUTs afford; its 21 lookup steps hold
# every GELU / ReLU boundary of the W4A4 bundles (at most 21 steps: tests/test_compiler.py).
PRESETS = {
    "w8-16x16": CoreConfig(),
    "w4-16x16": CoreConfig(act_bits=4, weight_bits=4, act_words=2048, wgt_words=2048, out_words=1024,
                           param_words=512, prog_words=512, max_shift=15, pe_acc_bits=32, lookup_steps=21),
}


def load_core_config(spec: str | Path) -> CoreConfig:
    """A preset name (``w8-16x16``) or a JSON file of ``CoreConfig`` fields."""
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise CoreConfigError(f"{path}: no such core config file (presets: {', '.join(PRESETS)})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CoreConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CoreConfigError(f"{path}: a core config is a JSON object of CoreConfig fields")
    return CoreConfig.from_dict(data, str(path))

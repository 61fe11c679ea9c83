"""Parameters of one GEMM engine instance: PE kind and widths, array shape, problem shape, memory map.

The engine computes Y[n, o] = out(sum_j PE(x[n, j], w[o, j])) for n < rows, o < outputs, j < reduction,
with an R x K PE array: PE (r, k) owns row r of a row block and column k of an output block.

    kind   PE                    x (act memory)         w (wgt memory)          out
    mac    GroupedMacLane        uniform / CAG codes    weight codes, z_w[o]    requantized codes
    hluq   HluqPE                HLUQ codes             weight codes, z_w[o]    requantized codes
    agq    AgqValueUnit (lanes)  AGQ probability codes  value codes V[j, o]     requantized codes
    qk^T is ``mac`` with groups = 1, multiplier 1, bias 0, z_w = z_k and ``requant = False`` (raw scores).

Every memory is written through one bus (``addr`` = region << region_shift | index, ``wdata``) and
the output memory is read back through it; ``layout`` in ``describe`` says which word holds what.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..units import AgqValueUnit, GroupedMacLane, HluqPE, Requantizer
from ..widths import AgqWidths, HluqWidths, MacWidths, RequantWidths

PE_UNITS = {"mac": GroupedMacLane, "hluq": HluqPE, "agq": AgqValueUnit}
KINDS = tuple(PE_UNITS)
CYCLE_BITS = 32
OPERAND_STAGES = 3  # issue to PE input: memory read, memory word register, operand register
EBR_BITS = 18 * 1024  # one ECP5 DP16KD


def _bits_for(count: int) -> int:
    return max(1, (max(count, 1) - 1).bit_length())


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class MemorySpec:
    name: str
    region: int
    depth: int
    width: int
    layout: str

    @property
    def ebr_estimate(self) -> int:
        """DP16KD tiles at the widest aspect that holds the depth (512x36 .. 16384x1)."""
        for depth, width in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)):
            if self.depth <= depth:
                return _ceil_div(self.width, width)
        return _ceil_div(self.width, 1) * _ceil_div(self.depth, 16384)


@dataclass(frozen=True)
class EngineConfig:
    kind: str
    widths: MacWidths | HluqWidths | AgqWidths
    requant: RequantWidths | None  # None: raw accumulators out (QK^T scores)
    pe_rows: int
    pe_cols: int
    max_rows: int    # rows the act/out memories hold (n < max_rows)
    reduction: int   # j range (in_features, head_dim or keys)
    outputs: int     # o range (out_features, keys or head_dim)
    name: str = "engine"
    extra: dict = field(default_factory=dict, compare=False)  # provenance for design.json

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown PE kind '{self.kind}' (one of {', '.join(KINDS)})")
        if self.pe_rows < 1 or self.pe_cols < 1:
            raise ValueError(f"PE array must be at least 1x1, got {self.pe_rows}x{self.pe_cols}")
        expected = AgqWidths if self.kind == "agq" else HluqWidths if self.kind == "hluq" else MacWidths
        if not isinstance(self.widths, expected):
            raise ValueError(f"{self.kind} engine needs {expected.__name__}, got {type(self.widths).__name__}")
        if self.widths.terms < self.reduction:
            raise ValueError(f"PE widths sized for {self.widths.terms} terms, reduction is {self.reduction}")
        if self.requant is not None and self.requant.acc_bits != self.acc_bits:
            raise ValueError("requantizer accumulator width differs from the PE accumulator width")

    # ---- operand widths ---------------------------------------------------------------------------
    @property
    def act_bits(self) -> int:
        return self.widths.act_bits

    @property
    def weight_bits(self) -> int:
        return self.widths.value_bits if self.kind == "agq" else self.widths.weight_bits

    @property
    def acc_bits(self) -> int:
        return self.widths.acc_bits

    @property
    def groups(self) -> int:
        return self.widths.groups if self.kind == "mac" else 1

    @property
    def out_bits(self) -> int:
        return self.requant.out_bits if self.requant else self.acc_bits

    @property
    def out_signed(self) -> bool:
        return self.requant.out_signed if self.requant else True

    # ---- tiling -----------------------------------------------------------------------------------
    @property
    def pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def row_blocks(self) -> int:
        return _ceil_div(self.max_rows, self.pe_rows)

    @property
    def out_blocks(self) -> int:
        return _ceil_div(self.outputs, self.pe_cols)

    @property
    def pe_latency(self) -> int:
        return PE_UNITS[self.kind].timing(self.widths)[0]

    @property
    def pe_min_interval(self) -> int:
        return PE_UNITS[self.kind].timing(self.widths)[1]

    @property
    def requant_latency(self) -> int:
        """0 without a requantizer (raw scores)."""
        return Requantizer.latency_of(self.requant) if self.requant else 0

    @property
    def min_gap(self) -> int:
        """Fewest cycles between the last terms of consecutive tiles: the drain of one tile (one
        accumulator per cycle into the requantizer) must end before the next tile's accumulators
        replace it, the PE's combine must be free, and the pending tile register must be consumed
        (OPERAND_STAGES + PE latency after it was written, plus one cycle to spare)."""
        return max(self.pes + 2, self.pe_min_interval, self.pe_latency + OPERAND_STAGES + 1)

    def tile_cycles(self) -> int:
        return max(self.reduction, self.min_gap)

    # ---- memories and bus -------------------------------------------------------------------------
    @property
    def col_word_bits(self) -> int:
        return self.weight_bits + self.widths.bias_bits

    @property
    def rq_word_bits(self) -> int:
        r = self.requant
        return 31 + r.shift_bits + r.zero_point_bits

    def memories(self) -> list[MemorySpec]:
        R, K, C = self.pe_rows, self.pe_cols, self.reduction
        mems = [
            MemorySpec("act", 1, self.row_blocks * C, R * self.act_bits,
                       f"word rb*{C} + j, bits [r*{self.act_bits} +: {self.act_bits}] = x[rb*{R} + r, j]"),
            MemorySpec("wgt", 2, self.out_blocks * C, K * self.weight_bits,
                       f"word ob*{C} + j, bits [k*{self.weight_bits} +: {self.weight_bits}] = w[ob*{K} + k, j]"),
        ]
        if self.groups > 1:
            mems.append(MemorySpec("grp", 3, C, _bits_for(self.groups), "word j = CAG group of input channel j"))
        if self.requant:
            r = self.requant
            mems.append(MemorySpec("rq", 4, self.out_blocks * K, self.rq_word_bits,
                                   f"word o = multiplier[30:0] | shift << 31 | zero_point << {31 + r.shift_bits}"))
        mems.append(MemorySpec("out", 5, self.row_blocks * self.out_blocks * self.pes, self.out_bits,
                               f"word ((rb*{self.out_blocks} + ob)*{R} + r)*{K} + k = y[rb*{R} + r, ob*{K} + k]"))
        if self.kind != "agq":
            for k in range(K):
                mems.append(MemorySpec(f"col{k}", 8 + k, self.out_blocks, self.col_word_bits,
                                       f"word ob = z_w | bias_acc << {self.weight_bits} of output ob*{K} + {k}"))
        return mems

    def registers(self) -> list[tuple[str, int]]:
        """Configuration registers (bus region 0, index = position): name, width."""
        regs = [("row_blocks", _bits_for(self.row_blocks + 1))]
        if self.kind == "mac":
            regs += [(f"zero_point{g}", self.act_bits) for g in range(self.groups)]
        if self.kind in ("mac", "hluq"):
            regs += [(f"multiplier{g}", self.widths.mult_bits) for g in range(self.widths.groups)]
        else:
            regs.append(("value_zero_point", self.weight_bits))
        return regs

    @property
    def region_shift(self) -> int:
        return max(_bits_for(max(m.depth for m in self.memories())), _bits_for(len(self.registers())))

    @property
    def addr_bits(self) -> int:
        return self.region_shift + _bits_for(8 + self.pe_cols)

    @property
    def data_bits(self) -> int:
        return max([m.width for m in self.memories()] + [w for _, w in self.registers()])

    def address(self, region: str | int, index: int) -> int:
        if isinstance(region, str):
            region = next(m.region for m in self.memories() if m.name == region)
        return (region << self.region_shift) | index

    def register_address(self, name: str) -> int:
        return [n for n, _ in self.registers()].index(name)

    def expected_cycles(self, rows: int) -> int:
        """Cycles from start to done for ``rows`` rows: the first tile issues C terms, every later one
        max(C, min_gap); then the last tile's operand stages (OPERAND_STAGES), PE latency, drain start
        (1), its R*K drain cycles, the requantizer with its parameter register (1 + its latency, if any)
        and the flush handshake (2)."""
        tiles = _ceil_div(rows, self.pe_rows) * self.out_blocks
        issue = self.reduction + (tiles - 1) * self.tile_cycles()
        tail = OPERAND_STAGES + 1 + 2 + (1 + self.requant_latency if self.requant else 0)
        return issue + self.pe_latency + self.pes + tail

    def ideal_cycles(self, rows: int) -> float:
        return rows * self.reduction * self.outputs / self.pes

    def describe(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "pe_rows": self.pe_rows, "pe_cols": self.pe_cols,
            "max_rows": self.max_rows, "reduction": self.reduction, "outputs": self.outputs,
            "row_blocks": self.row_blocks, "out_blocks": self.out_blocks,
            "widths": {"act_bits": self.act_bits, "weight_bits": self.weight_bits, "acc_bits": self.acc_bits,
                       "out_bits": self.out_bits, "out_signed": self.out_signed, "groups": self.groups,
                       "pe": {k: v for k, v in vars(self.widths).items()},
                       "requant": None if self.requant is None else vars(self.requant)},
            "timing": {"pe_latency": self.pe_latency, "requant_latency": self.requant_latency, "min_gap": self.min_gap,
                       "tile_cycles": self.tile_cycles()},
            "bus": {"addr_bits": self.addr_bits, "data_bits": self.data_bits, "region_shift": self.region_shift,
                    "address": "region << region_shift | index; output memory read 1 cycle after addr"},
            "registers": [{"name": n, "index": i, "width": w} for i, (n, w) in enumerate(self.registers())],
            "memories": [{"name": m.name, "region": m.region, "depth": m.depth, "width": m.width,
                          "layout": m.layout, "ebr_estimate": m.ebr_estimate} for m in self.memories()],
            **({"source": self.extra} if self.extra else {}),
        }


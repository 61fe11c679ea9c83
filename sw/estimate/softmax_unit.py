"""The on-chip softmax unit's cost on an attention's scores (numpy only).

Cycles: ``hw.softmax.unit.row_cycles`` for the invocation's rows of K keys (the unit's cycle model, equal
to its RTL in Verilator: docs/softmax_unit_cosim.md), rows and keys read from the QK^T invocation's shapes. Resources:
the unit's synthesis for each lane count (docs/estimate_inputs/softmax_unit_synthesis.json, from
``bitstreams.softmax_unit``). Energy, with the core's coefficients (``energy.py``):

    logic = (LUT x comb rate x lut_toggle + FF x register rate x ff_toggle) x the unit's cycles
    dsp   = MULT18X18D per lane x keys x dsp_op                 (one logit product per key)
    bram  = (3 buffer accesses per beat x its word + one EXP entry per key) x ebr_bit
    clock = the unit's FF x (time on the board x clock) x ff_clock   (its clock runs all the time)

Rates are toggles per bit per cycle measured on real LiteMedSAM rows with one lane count
(docs/estimate_inputs/activity_softmax_unit.json); other lane counts take the same rates per bit.

SAM ViT's relative-position term enters the unit as its bias; the core computes it first, as dot products
of the query codes with 16-bit table codes (``relative_position_macs``), which a core with W-bit weights
takes in 16 / W passes. They are charged as more of the QK^T invocation's own work: its core time and its
core energy (PE array, lanes, control, DSP, block RAM) grow by those MACs over the QK^T's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from hw.softmax.unit import T_BITS, UnitWidths, row_cycles
from hw.units.block_ram import ebr_blocks

_SHAPE = re.compile(r"\b(q|k)=(\d+(?:x\d+)*)")


def _shapes(key: str) -> dict[str, list[int]]:
    """The q and k shapes of a QK^T invocation's key (``hw.compiler.invocation.InvocationSpec.key``)."""
    shapes = {name: [int(d) for d in dims.split("x")] for name, dims in _SHAPE.findall(key)}
    if set(shapes) != {"q", "k"}:
        raise ValueError(f"{key}: not a QK^T invocation (no q= and k= shapes)")
    return shapes


def score_rows(key: str, out_elements: int) -> tuple[int, int]:
    """(rows, keys) of a QK^T invocation: rows are every query of every window and head, keys the length
    of each row."""
    shapes = _shapes(key)
    rows, keys = math.prod(shapes["q"][:-1]), shapes["k"][-2]
    if rows * keys != out_elements:
        raise ValueError(f"{key}: {rows} rows x {keys} keys != its {out_elements} output elements")
    return rows, keys


def score_bits(dim: int, act_bits: int, weight_bits: int) -> int:
    """Signed width of a QK^T's integer scores, the unit's input: each is a sum over ``dim`` of (q - zq)(k - zk),
    codes of act_bits and weight_bits lying at most 2^b - 1 from their zero points."""
    return (dim * (2**act_bits - 1) * (2**weight_bits - 1)).bit_length() + 1


def tile_store_ebr(tile_rows: int, tile_cols: int, keys: int, bits: int, relative_side: int = 0,
                   bias_bits: int = UnitWidths().bias_bits) -> int:
    """DP16KD of a store that holds the ``tile_rows`` rows of one tile until each is complete (the array emits a
    tile's rows interleaved, its K = ``tile_cols`` lanes one score each per cycle, so a unit fed by it holds
    them all): one memory per lane of tile_rows x ceil(keys / K) scores of ``bits``, which the unit reads a
    row's consecutive keys from, each key in another lane's memory. SAM ViT's relative-position term
    (``relative_side``: the grid's side) adds per row its 2 x side height and width terms; the unit's bias
    input is the sum of a key's two. The scores are stored as the core's integer sums, before the unit's
    requantization to logits, so no definition changes."""
    scores = tile_cols * ebr_blocks(bits, tile_rows * -(-keys // tile_cols))
    return scores + (ebr_blocks(bias_bits, tile_rows * 2 * relative_side) if relative_side else 0)


def tile_row_keys(tile_rows: int, tile_cols: int, bits: int, spare_ebr: int) -> int:
    """The longest rows (a multiple of ``tile_cols`` keys) whose tile store (``tile_store_ebr``, no
    relative-position term) fits ``spare_ebr`` block RAMs."""
    keys = 0
    while tile_store_ebr(tile_rows, tile_cols, keys + tile_cols, bits) <= spare_ebr:
        keys += tile_cols
    return keys


def invocation_store(key: str, out_elements: int, config, relative: bool) -> dict:
    """A QK^T invocation's tile store on ``config``'s core (``tile_store_ebr``): its block RAMs and the bits
    it moves (every score written once and read once into the unit; with the relative-position term its
    terms written once per row and two read per key)."""
    rows, keys = score_rows(key, out_elements)
    bits = score_bits(_shapes(key)["q"][-1], config.act_bits, config.weight_bits)
    side = math.isqrt(keys) if relative else 0
    bias = UnitWidths().bias_bits
    moved = rows * keys * 2 * bits + (rows * 2 * side * bias + rows * keys * 2 * bias if relative else 0)
    return {"ebr": tile_store_ebr(config.rows, config.cols, keys, bits, side), "bits_moved": moved,
            "score_bits": bits}


def relative_position_macs(key: str, out_elements: int) -> int:
    """MACs of SAM ViT's relative-position term for a QK^T invocation: per row (query), the query's dot
    products with the height table's and the width table's rows for each key row and column (2 x side of
    them, d long)."""
    rows, keys = score_rows(key, out_elements)
    return rows * 2 * math.isqrt(keys) * _shapes(key)["q"][-1]


@dataclass(frozen=True)
class SoftmaxUnitCost:
    widths: UnitWidths
    lut: int
    ff: int
    dsp: int
    ebr: int
    fmax_mhz: float
    rates: tuple[float, float]          # toggles per bit per cycle: register, comb
    sources: tuple[str, str]            # synthesis, activity

    @classmethod
    def variants(cls, synthesis: Path, activity: Path) -> list["SoftmaxUnitCost"]:
        """One per synthesized lane count, each with the measured rates."""
        syn = json.loads(Path(synthesis).read_text())
        act = json.loads(Path(activity).read_text())
        unit = act["unit"]
        rates = tuple(unit[k]["toggles"] / (unit[k]["bits"] * unit["cycles"]) for k in ("register", "comb"))
        return [cls(UnitWidths(lanes=u["lanes"], max_keys=u["max_keys"]), u["lut4"], u["ff"], u["dsp"], u["ebr"],
                    u["fmax_mhz"], rates, (str(synthesis), str(activity))) for u in syn["units"]]

    def call(self, key: str, out_elements: int, coeff: dict) -> dict:
        """Cycles and energy (pJ, but the clock's) of the unit on one QK^T invocation's scores."""
        rows, keys = score_rows(key, out_elements)
        if keys > self.widths.max_keys:
            raise ValueError(f"{key}: rows of {keys} keys exceed the unit's {self.widths.max_keys}")
        cycles = row_cycles(keys, rows, self.widths)
        return {"cycles": cycles, **self.work(cycles, rows * -(-keys // self.widths.lanes), rows * keys, coeff)}

    def work(self, cycles: int, beats: int, keys: int, coeff: dict) -> dict:
        """Energy (pJ) of the unit busy ``cycles`` cycles on ``beats`` beats holding ``keys`` scores."""
        word = self.widths.lanes * (T_BITS + 1)
        exp_bits = self.widths.exp_bits + 1
        register, comb = self.rates
        return {"logic": (self.lut * comb * coeff["lut_toggle"] + self.ff * register * coeff["ff_toggle"]) * cycles,
                "dsp": self.dsp / self.widths.lanes * keys * coeff["dsp_op"],
                "bram": (3 * beats * word + keys * exp_bits) * coeff["ebr_bit"]}

    def path(self, synthesis: dict, widths: UnitWidths) -> "SoftmaxUnitCost":
        """The same unit's activity on a core's softmax path as ``synthesis`` counts it (the unit, its store
        and feeder), built for ``widths``."""
        return dataclasses.replace(self, widths=widths, lut=synthesis["lut4"], ff=synthesis["ff"], dsp=synthesis["dsp"], ebr=synthesis["ebr"],
                                   fmax_mhz=synthesis.get("fmax_mhz") or self.fmax_mhz)

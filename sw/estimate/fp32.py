"""The FP32 baseline: the same architecture (the core's compiler, tiling and cycle model) with FP32
multiply-add lanes (``hw.fp32.Fp32MacLane``) as its processing elements, numpy only.

How the FP32 accelerator is mapped onto the cycle model, and what that leaves out:

* Array: R x K FP32 lanes in place of the R x K integer PEs. The cycle model (``hw.core.params``)
  takes power-of-two arrays only, so the lane count that fits the device (``lanes_by_resources``) is
  rounded to a power-of-two array; ``fp32_array`` says which and by how much it exceeds the bound.
* Workload: the W8A8 uniform bundle's invocations (one uniform MAC segment per GEMM, as an FP32 dot
  product needs; no CAG groups, HLUQ or AGQ passes), compiled for a configuration with 8-bit codes in
  which every code stands for one float32.
* Buffers: each word of the modelled configuration stands for ``bus_bits / 8`` float32, 4x the bits of
  the INT8 core's word. ``FITTING_SHRINK`` divides the INT8 core's depths by 4, so the FP32 buffers take
  the INT8 core's block RAM bits, which the LFE5U-85F has (twice the W4 core's buffer bits); the few
  layers whose smallest job does not fit them (e.g. LiteMedSAM's neck.2, one output row over 256
  channels x 3 x 3) are timed with their buffers grown (``analyze.MAX_GROWTH``) and listed. Keeping the
  INT8 core's depths instead (``shrink=1``) gives buffers of 4x those bits, more than the device has: a
  baseline that reloads less than any FP32 design on this FPGA could, reported beside it as a bracket.
* External memory: every operand and result is 4 bytes, so each LOAD of activations or weights moves
  4x the words the 8-bit program moves (its codes are dense, ``bus_bits / 8`` to a word). A STORE
  moves row vectors, each of ``cols`` elements in whole words of its own unless the program packs them
  (``CoreConfig.out_words_per_row``): a row of ``cols`` float32 takes ``ceil(cols * 32 /
  bus_bits)`` words where the 8-bit program's row of e-bit elements takes ``ceil(cols * e /
  bus_bits)``, or 1 / P of a word when the program packs P rows to a word (``rows_per_out_word``),
  and the STORE is scaled by that ratio (P for 8 columns on a 256-bit bus: eight float32 fill the
  word that P rows of eight codes share). Packing also lets the model's OUT words hold P rows, as
  a word of the FP32 design holds 4 rows of 8 float32 (for 16-bit elements the model holds 2: the
  FP32 design's OUT buffer counted at half its row capacity there).
  ``Fp32Mapping.physical_streams`` rescales the transfers before the cycle model times them, so the
  bus (``bus_bits`` per cycle) carries what the FP32 design would move.
* Lanes: an FP32 lane accumulates in its own adder (latency ``LANE_LATENCY``), taking one product per
  cycle while ``INTERLEAVE`` sums are in flight: each lane holds ``INTERLEAVE`` tiles' outputs round
  robin (``hw.fp32.mac_lane_cycles``). The integer core's lanes (combine, requantize) have no FP32
  counterpart; the model keeps their R-cycle passes, which overlap the next tile's terms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hw.core.config import CoreConfig
from hw.core.isa import Buffer, Opcode, Transfer
from hw.core.streams import Streams

FP32_BITS = 32
MODEL_CODE_BITS = 8
FITTING_SHRINK = FP32_BITS // MODEL_CODE_BITS   # float32 buffers in the INT8 core's block RAM bits
ROW_WORDS_MAX = (1 << 12) - 1   # isa.Transfer.row_words
ROWS_MAX = (1 << 16) - 1        # isa.Transfer.rows


def lanes_by_resources(lut_budget: float, dsp_budget: int, lut_per_lane: float, dsp_per_lane: int) -> dict:
    by_lut = int(lut_budget // lut_per_lane)
    by_dsp = int(dsp_budget // dsp_per_lane)
    return {"by_lut": by_lut, "by_dsp": by_dsp, "lanes": min(by_lut, by_dsp)}


def fp32_array(lanes: int) -> tuple[int, int]:
    """The smallest power-of-two R x K array (R <= K <= 2R) with at least ``lanes`` lanes: the cycle
    model's arrays are powers of two, so the baseline gets at least what fits."""
    rows = cols = 1
    while rows * cols < lanes:
        if cols <= rows:
            cols *= 2
        else:
            rows *= 2
    return rows, cols


def fp32_model_config(physical: CoreConfig, rows: int, cols: int, shrink: int = 1) -> CoreConfig:
    """The 8-bit-code configuration that models the FP32 array next to ``physical``: buffer depths
    divided by ``shrink`` (4 would hold as many float32 operands as ``physical``'s block RAM bits)."""
    return dataclasses.replace(
        physical, rows=rows, cols=cols, act_bits=MODEL_CODE_BITS, weight_bits=MODEL_CODE_BITS,
        act_words=physical.act_words // shrink, wgt_words=physical.wgt_words // shrink,
        out_words=physical.out_words // shrink, formats=("uniform",), pe_acc_bits=48, max_shift=31)


def _scaled(inst: Transfer, factor: int, where: str) -> Transfer:
    if factor == 1:
        return inst
    if inst.row_words * factor <= ROW_WORDS_MAX:
        return dataclasses.replace(inst, row_words=inst.row_words * factor)
    if inst.rows * factor <= ROWS_MAX:
        return dataclasses.replace(inst, rows=inst.rows * factor)
    raise ValueError(f"{where}: a transfer of {inst.rows} x {inst.row_words} words cannot be scaled by {factor}")


@dataclass(frozen=True)
class Fp32Mapping:
    config: CoreConfig          # the modelled configuration (8-bit placeholders for float32)
    lanes_bound: dict           # lanes_by_resources(...)
    rows: int
    cols: int

    stored_bits = FP32_BITS     # every result leaves the array as a float32

    @property
    def lanes(self) -> int:
        return self.rows * self.cols

    def store_factor(self, out_bits: int, rows_per_word: int = 1) -> int:
        """Words an FP32 row vector takes per word the 8-bit program's row of ``out_bits`` elements takes
        (``rows_per_word`` of them to a word when the program packs its rows)."""
        fp32_words = self.config.out_words_per_row(FP32_BITS)
        if rows_per_word > 1:
            return fp32_words * rows_per_word
        program_words = self.config.out_words_per_row(out_bits)
        if fp32_words % program_words:
            raise ValueError(f"an FP32 row of {fp32_words} words is not a multiple of {program_words} words")
        return fp32_words // program_words

    def physical_streams(self, streams: Streams, out_bits: int, rows_per_word: int = 1) -> Streams:
        """The transfers of the FP32 design: activation and weight loads 4x, stores ``store_factor`` x
        (descriptor and constant loads unchanged: the timing reads the descriptors from PARAM)."""
        load_factor = FP32_BITS // MODEL_CODE_BITS
        store_factor = self.store_factor(out_bits, rows_per_word)

        def convert(unit: str, factor_of) -> tuple:
            out = []
            for word, inst in zip(getattr(streams, unit), streams.decoded(unit)):
                if inst.opcode in (Opcode.LOAD, Opcode.STORE):
                    out.append(_scaled(inst, factor_of(inst), unit).encode())
                else:
                    out.append(word)
            return tuple(out)

        return Streams(
            convert("load", lambda i: load_factor if i.buffer in (Buffer.ACT, Buffer.WGT) else 1),
            streams.compute,
            convert("store", lambda i: store_factor))

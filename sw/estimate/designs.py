"""The accelerators the estimate compares, each as a core configuration the cycle model times, a clock,
its resources by block and its measured activity (numpy only).

* the W4A4 core (or any core configuration given with ``--core``): resources from its synthesis;
* the INT8 core (``w8-16x16``): the ``w4-16x16`` core's blocks with the PE array scaled by the ratio of
  one W8 PE to one W4 PE (both synthesized), brought to the totals of its own synthesis where it exists
  (``scripts/core_synth.py --config w8-16x16 --block core``), stated so, whichever core is the subject;
* the FP32 array: FP32 lanes (``hw.fp32``) measured per lane in the 4x4 lane array, in place of the PE
  array and the integer lanes, plus the subject core's other blocks (control, buffers, DMA).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hw.core.config import CoreConfig
from hw.core.params import lane_dsp_count
from hw.fp32.significand import DSP_COUNT as FP32_LANE_DSP


@dataclass
class Design:
    key: str                      # "subject", "int8", "fp32"
    label: str
    config: CoreConfig
    clock_mhz: float
    clock_source: str
    resources: dict               # block -> {"lut", "ff"}; blocks: array, lanes, core
    dsp: int
    ebr: int | None
    resource_notes: list = field(default_factory=list)
    activity: object = None       # activity.CoreActivity, or LaneActivity for fp32
    core_activity: object = None  # fp32: the rest of the design toggles as the core's does
    mapping: object = None        # fp32.Fp32Mapping
    fp32: bool = False
    lanes: int = 0                # fp32 lanes
    dsp_per_pe: int = FP32_LANE_DSP
    dsp_per_lane: int = lane_dsp_count()
    lutram: int = 0               # TRELLIS_DPR16X4 (LUT RAM) cells, beside the LUT4 of ``resources``
    softmax: object = None        # a core with the softmax path: its unit's cost model (softmax_unit.SoftmaxUnitCost
                                  # with the path's synthesis), which prices the SOFTMAX instructions' work

    @property
    def bus_bits(self) -> int:
        return self.config.bus_bits

    @property
    def lut(self) -> int:
        return sum(b["lut"] for b in self.resources.values())

    @property
    def ff(self) -> int:
        return sum(b["ff"] for b in self.resources.values())


def core_blocks(core: dict, array: dict, pair: dict, cols: int, path: dict | None = None) -> dict:
    """Split a core's synthesis into the PE array, the lanes (cols / 2 lane pairs), the softmax path (a
    core with one: ``path``, its synthesis alone) and the rest; LUT RAM stays apart, as in the core's count."""
    lanes = {"lut": pair["lut4"] * cols // 2, "ff": pair["ff"] * cols // 2}
    arr = {"lut": array["lut4"], "ff": array["ff"]}
    out = {"array": arr, "lanes": lanes}
    if path is not None:
        out["softmax"] = {"lut": path["lut4"], "ff": path["ff"]}
    taken = {k: sum(b[k] for b in out.values()) for k in ("lut", "ff")}
    return {**out, "core": {"lut": core["lut4"] - taken["lut"], "ff": core["ff"] - taken["ff"]}}


def scaled_array(blocks: dict, pe_from: dict, pe_to: dict) -> dict:
    """``blocks`` with the PE array scaled by the ratio of two PEs' synthesis (LUT and FF separately)."""
    out = {k: dict(v) for k, v in blocks.items()}
    out["array"] = {"lut": round(blocks["array"]["lut"] * pe_to["lut4"] / pe_from["lut4"]),
                    "ff": round(blocks["array"]["ff"] * pe_to["ff"] / pe_from["ff"])}
    return out


def to_totals(blocks: dict, lut: int, ff: int) -> dict:
    """``blocks`` scaled, LUT and FF separately, to sum to a design's measured totals (their split kept)."""
    have = {k: sum(b[k] for b in blocks.values()) for k in ("lut", "ff")}
    want = {"lut": lut, "ff": ff}
    return {name: {k: round(b[k] * want[k] / have[k]) for k in ("lut", "ff")} for name, b in blocks.items()}


def fp32_blocks(blocks: dict, lane_array: dict, lanes_in_array: int, lanes: int) -> dict:
    """FP32 lanes (per-lane cost of a measured lane array) in place of the PE array and integer lanes."""
    return {"array": {"lut": round(lane_array["lut4"] / lanes_in_array * lanes),
                      "ff": round(lane_array["ff"] / lanes_in_array * lanes)},
            "lanes": {"lut": 0, "ff": 0}, "core": dict(blocks["core"])}   # no softmax path: the host's softmax

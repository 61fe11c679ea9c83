"""What one invocation costs on a core: MACs, cycles from the core's cycle model, external memory
traffic counted from the program's LOAD/STORE instructions, and the events the energy model prices.

    cost = call_cost(config, call)                  # the core itself
    cost = call_cost(mapping.config, call, mapping)  # another architecture mapped onto the model (fp32.py)

``cycles`` is ``hw.core.timing.run_timing`` summed over the invocation's runs of the core: the count the
RTL's cycle counter gives (tests/ and ``samhw simulate`` compare the two). The MAC count is the layer's
arithmetic, without the padding the tiling adds (``terms`` counts what the array issues, padding
included).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from hw.compiler.invocation import plan_invocation
from hw.compiler.program import build_program
from hw.core.config import CoreConfig
from hw.core.isa import Buffer, Opcode, element_bits
from hw.core.timing import run_timing

from .workload import Call

BUFFERS = {Buffer.ACT: "act", Buffer.WGT: "wgt", Buffer.PARAM: "param"}


@dataclass
class CallCost:
    """One invocation on one core configuration (all counts for one run of the invocation)."""

    macs: int
    cycles: int
    parts: int                # runs of the core
    gemms: int
    tiles: int                # R x K output tiles
    terms: int                # issue cycles of the PE array (one term per PE per cycle), padding included
    lane_cycles: int          # cycles each lane spends combining or requantizing (its multiplier busy)
    out_rows: int             # OUT row vectors written (one word each per output pass cycle)
    out_words: int            # OUT words written by the lanes
    load_beats: dict          # bus words read from external memory, by buffer (act, wgt, param)
    store_beats: int          # bus words written to external memory
    bus_bytes: int            # bytes per beat
    out_elements: int = 0     # output elements of the layer (no padding)
    out_bits: int = 0         # their width in memory (the narrowest output region's; 32 on the FP32 design)
    softmax_cycles: int = 0   # cycles SOFTMAX instructions held the COMPUTE unit (cores with the softmax path)
    softmax_beats: int = 0    # beats of ``softmax_lanes`` keys they passed through the unit
    softmax_keys: int = 0     # scores they turned into codes (rows x keys)

    @property
    def dense_store_bytes(self) -> float:
        """What the stores would move with every output element packed, no row padded to a word."""
        return self.out_elements * self.out_bits / 8

    @property
    def read_bytes(self) -> int:
        return sum(self.load_beats.values()) * self.bus_bytes

    @property
    def write_bytes(self) -> int:
        return self.store_beats * self.bus_bytes

    @property
    def bytes(self) -> int:
        return self.read_bytes + self.write_bytes

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "CallCost":
        return cls(**data)


def macs_of(spec, layer) -> int:
    """Multiply-accumulates of the layer's arithmetic (no padding)."""
    shapes = dict(spec.shapes)
    if spec.kind == "linear":
        return math.prod(shapes["input"][:-1]) * layer.in_features * layer.out_features
    if spec.kind == "attention":
        if spec.op in ("scores", "probs"):
            *lead, nq, d = shapes["q"]
            return math.prod(lead) * nq * shapes["k"][-2] * d
        *lead, nq, nk = shapes["probs"]
        return math.prod(lead) * nq * nk * shapes["v"][-1]
    n, c, height, width = shapes["input"]
    kh, kw = layer.kernel_size
    ho = (height + 2 * layer.padding - kh) // layer.stride + 1
    wo = (width + 2 * layer.padding - kw) // layer.stride + 1
    return n * layer.out_channels * ho * wo * (c // layer.groups) * kh * kw


def lane_work(config: CoreConfig, plan) -> tuple[int, int, int, int]:
    """(tiles, lane cycles, OUT row vectors, OUT words) of a planned invocation, from its descriptors:
    per tile each lane combines R partials per segment (2R with Y) and requantizes R accumulators."""
    tiles = lane = rows = words = 0
    r = config.rows
    for job in plan.jobs:
        loops = job.desc.loops
        n = job.n_batch * loops.n_ob * job.n_rb
        per_tile = 0 if loops.raw else r * (len(job.desc.segments) * (1 + loops.uses_y) + 1)
        tiles += n
        lane += n * per_tile
        rows += n * r
        words += n * r * config.out_words_per_row(element_bits(loops.out_width))   # a packed row: one write
    return tiles, lane, rows, words


def call_cost(config: CoreConfig, call: Call, mapping=None) -> CallCost:
    """Compile ``call`` for ``config`` and count its cycles and traffic; ``mapping`` (fp32.py) rescales
    the transfers of another architecture before the cycle model times them."""
    spec, layer = call.spec, call.layer      # plan_invocation and build_program leave what the core cannot hold
    plan = plan_invocation(config, layer, spec)
    tiles, lane, rows, words = lane_work(config, plan)
    program = build_program(config, [(spec, layer)], {})
    inv = program.invocations[0]
    memory = program.memory()
    out_bits = min(region.bits for region in inv.outputs.values())
    rows_per_word = max(region.rows_per_word for region in inv.outputs.values())
    out_elements = sum(math.prod(region.shape) for region in inv.outputs.values())
    cycles = terms = softmax_cycles = softmax_beats = softmax_keys = 0
    loads = {"act": 0, "wgt": 0, "param": 0}
    stores = 0
    for streams in inv.parts:
        if mapping is not None:
            streams = mapping.physical_streams(streams, out_bits, rows_per_word)
        result = run_timing(config, streams, memory)
        cycles += result.cycles
        terms += sum(g.terms for g in result.gemms)
        for inst in streams.decoded("load"):
            if inst.opcode == Opcode.LOAD:
                loads[BUFFERS[Buffer(inst.buffer)]] += inst.rows * inst.row_words
        stores += sum(i.rows * i.row_words for i in streams.decoded("store") if i.opcode == Opcode.STORE)
        softmax_cycles += result.softmax_busy
        for inst in streams.decoded("compute"):
            if inst.opcode == Opcode.SOFTMAX:
                softmax_beats += inst.n_rows * -(-inst.keys // config.softmax_lanes)
                softmax_keys += inst.n_rows * inst.keys
    return CallCost(macs=macs_of(spec, layer), cycles=cycles, parts=len(inv.parts), gemms=inv.gemms, tiles=tiles,
                    terms=terms, lane_cycles=lane, out_rows=rows, out_words=words, load_beats=loads,
                    store_beats=stores, bus_bytes=config.bus_bytes, out_elements=out_elements,
                    out_bits=out_bits if mapping is None else mapping.stored_bits, softmax_cycles=softmax_cycles,
                    softmax_beats=softmax_beats, softmax_keys=softmax_keys)

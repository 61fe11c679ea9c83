"""Whole real layers on the core's RTL: the acceptance set of the co-simulation (``samhw simulate``).

For each case the bundle's model graph runs once through the integer reference on a real image (the
recorder of ``hw/compiler/model.py`` keeps the chosen invocations' input codes: all rows, all outputs),
the invocation is compiled alone for the core, and its runs go to Verilator. Every output element is
compared with sw/ref, every OUT word the program stores with the functional model (``hw.fsim``), and the
RTL's cycle counter with the cycle model (``hw.core.timing``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from hw.compiler.invocation import InvocationSpec
from hw.compiler.model import Recorder, invocation_kind, record_invocations, reference_outputs
from hw.compiler.program import build_program
from hw.compiler.softmax import recorded_op, with_softmax
from hw.core.config import CoreConfig
from hw.core.timing import run_timing
from hw.fsim import run as fsim_run
from sw.atomic_file import write_atomic
from sw.bundle import Bundle

from .core_runner import CoreRun, CoreSimulator


@dataclass(frozen=True)
class CoreCase:
    layer: str
    op: str | None = None   # None: linear / conv; "scores" (QK^T), "values" (A.V) or, on a core with the softmax
                            # path, "probs" (QK^T and the softmax) of an attention


# One layer of each kind the issue names, from the smallest stage that has it (stage 2: 64 x 64 tokens,
# 14 x 14 windows), so that whole layers stay within minutes on Verilator. A bundle without a kind's
# format (MinMax has uniform inputs and softmax) runs the same layers with its own formats.
ACCEPTANCE = (
    CoreCase("image_encoder.layers.2.blocks.0.attn.qkv"),          # linear, CAG input (uniform in MinMax)
    CoreCase("image_encoder.layers.2.blocks.0.attn.proj"),         # linear, uniform input
    CoreCase("image_encoder.layers.2.blocks.0.mlp.fc2"),           # linear, HLUQ input
    CoreCase("image_encoder.layers.2.downsample.conv1"),           # conv 1x1
    CoreCase("image_encoder.neck.2"),                              # conv 3x3 dense
    CoreCase("image_encoder.layers.2.blocks.0.local_conv"),        # conv 3x3 depthwise
    CoreCase("image_encoder.layers.1.downsample.conv2"),           # conv 3x3 depthwise stride 2 (patch merging)
    CoreCase("image_encoder.layers.2.blocks.0.attn", "scores"),   # QK^T
    CoreCase("image_encoder.layers.2.blocks.0.attn", "values"),   # A.V (AGQ, or uniform softmax in MinMax)
    CoreCase("mask_decoder.transformer.layers.0.cross_attn_token_to_image.k_proj"),  # decoder linear
    CoreCase("mask_decoder.transformer.layers.0.cross_attn_token_to_image", "scores"),
    CoreCase("mask_decoder.transformer.layers.0.cross_attn_token_to_image", "values"),
    CoreCase("mask_decoder.transformer.layers.0.mlp.lin2"),        # decoder linear, HLUQ input
    CoreCase("mask_decoder.transformer.layers.0.mlp.lin1"),        # decoder linear, into lin2 through ReLU
)
# On a core with an output lookup, the cases whose output the host reads only through GELU / ReLU (the
# patch merging's conv1 and conv2, the decoder's lin1) write the next layer's codes through it.

# On a core with the softmax path, the decoder's QK^T runs with its softmax (the encoder's attention adds
# TinyViT's bias to its logits, which needs the path's grid bias), and so does the image-to-token attention:
# the longest rows (4,096 keys) and the most tiles (4,096 rows of 7 keys).
SOFTMAX_CASES = (
    CoreCase("mask_decoder.transformer.layers.0.cross_attn_token_to_image", "probs"),
    CoreCase("mask_decoder.transformer.layers.0.cross_attn_image_to_token", "probs"),
)


# With the grid bias too, the encoder's QK^T runs with its softmax and TinyViT's bias: 14 x 14 windows
# (the stage above) and 7 x 7 windows, whose odd side has key rows end within a beat.
GRID_BIAS_CASES = (
    CoreCase("image_encoder.layers.2.blocks.0.attn", "probs"),
    CoreCase("image_encoder.layers.1.blocks.0.attn", "probs"),
)


def acceptance_cases(config: CoreConfig) -> tuple[CoreCase, ...]:
    """The acceptance set for ``config``: with the softmax path, the decoder's QK^T as ``SOFTMAX_CASES``, and
    with its grid bias the encoder's as ``GRID_BIAS_CASES``."""
    if not config.softmax_lanes:
        return ACCEPTANCE
    fused = SOFTMAX_CASES + (GRID_BIAS_CASES if config.softmax_bias_side else ())
    layers = {c.layer for c in fused}
    return tuple(c for c in ACCEPTANCE if not (c.op == "scores" and c.layer in layers)) + fused


@dataclass
class CaseResult:
    kind: str
    layer: str
    op: str | None
    elements: int          # output elements compared with sw/ref
    mismatches: int
    words: int             # OUT words compared with the functional model
    word_mismatches: int
    cycles: int            # the RTL's cycle counter, summed over the invocation's runs
    model_cycles: int      # the cycle model's count
    macs: int
    seconds: float

    def utilization(self, config: CoreConfig) -> float:
        return self.macs / (config.pes * self.cycles) if self.cycles else 0.0

    def line(self, config: CoreConfig) -> str:
        op = f" {self.op}" if self.op else ""
        return (f"{self.kind}: {self.layer}{op}: {self.elements} outputs, {self.mismatches} mismatches; "
                f"{self.words} OUT words vs fsim, {self.word_mismatches} differ; {self.cycles} cycles "
                f"(model {self.model_cycles}), utilization {self.utilization(config):.3f}, {self.seconds:.0f} s")


class _Keep(Recorder):
    """Computes every layer with sw/ref and keeps the input codes (and the invocation, with its output
    lookup) of the chosen invocations only."""

    def __init__(self, wanted: set[tuple[str, str | None]]):
        super().__init__(compute=True, keep_inputs=False)
        self.wanted, self.kept, self.specs = wanted, {}, {}

    def noted(self, spec, layer, tensors):
        if (layer.name, spec.op) in self.wanted and (layer.name, spec.op) not in self.kept:
            self.kept[layer.name, spec.op] = {k: np.asarray(v, np.int64) for k, v in tensors.items()}
            self.specs[layer.name, spec.op] = spec


def case_inputs(bundle: Bundle, image: np.ndarray, box: np.ndarray, cases=ACCEPTANCE
                ) -> dict[tuple[str, str | None], tuple[InvocationSpec, dict[str, np.ndarray]]]:
    """Each case's first invocation in the model run on ``image`` and ``box``, and its input codes."""
    missing = [c.layer for c in cases if c.layer not in bundle.layers]
    if missing:
        raise ValueError(f"{bundle.where}: the acceptance set needs layer '{missing[0]}', which the bundle lacks")
    keep = _Keep({(c.layer, recorded_op(c.op)) for c in cases})
    record_invocations(bundle, keep, image, box)
    out = {key: (keep.specs[key], inputs) for key, inputs in keep.kept.items()}
    for c in cases:
        if c.op == "probs":
            spec, inputs = out[c.layer, recorded_op(c.op)]
            out[c.layer, c.op] = (with_softmax(spec), inputs)
    return out


def _region_words(region) -> tuple[int, int]:
    return region.base, region.words


def simulate_case(sim: CoreSimulator, config: CoreConfig, layers: dict, case: CoreCase, spec: InvocationSpec,
                  inputs: dict[str, np.ndarray]) -> CaseResult:
    """One case on ``sim``: ``layers`` by name hold the case's layer (and the layer its output lookup feeds)."""
    start = time.perf_counter()
    layer = layers[case.layer]
    program = build_program(config, [(spec, layer)], {})
    inv = program.invocations[0]
    lookup = inv.spec.lookup
    memory = program.memory()
    inv.write_inputs(memory, config.bus_bits, **inputs)
    reads = [_region_words(r) for r in inv.outputs.values()]
    runs, states, model_cycles = [], [], 0
    state = memory
    for i, streams in enumerate(inv.parts):
        model_cycles += run_timing(config, streams, state).cycles
        state = fsim_run(config, streams, state)
        states.append(state)
        runs.append(CoreRun(streams, memory if i == 0 else None, read=reads))
    results = sim.run_batch(runs, name=f"{case.layer}{'_' + case.op if case.op else ''}".replace(".", "_"))
    got_memory = np.zeros_like(memory)
    words = got_memory.reshape(-1, config.bus_bytes)
    for (base, count), block in zip(reads, np.split(results[-1].words, np.cumsum([n for _, n in reads])[:-1])):
        words[base:base + count] = block
    fsim_words = states[-1].reshape(-1, config.bus_bytes)
    compared = sum(n for _, n in reads)
    word_mismatches = sum(int(np.count_nonzero((words[b:b + n] != fsim_words[b:b + n]).any(axis=1))) for b, n in reads)
    got = inv.read_outputs(got_memory, config.bus_bits)
    want = reference_outputs(layer, case.op, inputs, (lookup.step, layers[lookup.into]) if lookup else None)
    elements = sum(v.size for v in want.values())
    mismatches = sum(int(np.count_nonzero(got[k] != v)) for k, v in want.items())
    kind = invocation_kind(layer, case.op) + (f", {lookup.step.upper()} lookup into the next layer's codes"
                                              if lookup else "")
    return CaseResult(kind, case.layer, case.op, elements, mismatches, compared,
                      word_mismatches, sum(r.cycles for r in results), model_cycles, inv.macs,
                      time.perf_counter() - start)


def simulate_cases(bundle: Bundle, config: CoreConfig, image: np.ndarray, box: np.ndarray, work: str,
                   cases=None, memory_words: int | None = None, out=sys.stdout) -> list[CaseResult]:
    """Every case on one Verilator build of ``config``; one line per case on ``out``."""
    cases = acceptance_cases(config) if cases is None else cases
    inputs = case_inputs(bundle, image, box, cases)
    programs_words = memory_words or (1 << 20)
    sim = CoreSimulator(config, programs_words, work)
    results = []
    for case in cases:
        result = simulate_case(sim, config, bundle.layers, case, *inputs[case.layer, case.op])
        print(result.line(config), file=out, flush=True)
        results.append(result)
    return results


def write_report(path, command: str, bundle: Bundle, config: CoreConfig, image_name: str,
                 results: list[CaseResult]) -> None:
    h = bundle.header
    rows = [f"| {r.kind} | `{r.layer}`{' ' + r.op if r.op else ''} | {r.elements} | {r.mismatches} | {r.words} | "
            f"{r.word_mismatches} | {r.cycles} | {r.model_cycles} | {r.utilization(config):.3f} | {r.seconds:.0f} |"
            for r in results]
    elements, mismatches = sum(r.elements for r in results), sum(r.mismatches for r in results)
    lines = [
        "# Core co-simulation on Verilator: whole real layers", "",
        f"Generated by `{command}`; do not edit by hand.", "",
        f"Bundle: `{h.model}` `{h.recipe}` W{h.weight_bits}A{h.act_bits}; core `{config.digest}` "
        f"({config.rows}x{config.cols} PEs, {config.act_bits}-bit codes, {config.bus_bits}-bit bus, memory read "
        f"latency {config.mem_read_latency}, write latency {config.mem_write_latency}); activations of val image "
        f"`{image_name}` and its first box, every row and output of each layer. Outputs are compared element by "
        "element with sw/ref; the OUT words the program stores, word by word with the functional model; the "
        "RTL's cycle counter with the cycle model (hw/core/timing.py).", "",
        "| kind | layer | outputs compared | mismatches | OUT words vs fsim | differ | RTL cycles | model cycles | "
        "utilization | wall s |", "|---|---|---|---|---|---|---|---|---|---|", *rows, "",
        f"compared {elements} words, {mismatches} mismatches.", ""]
    write_atomic(path, "\n".join(lines))

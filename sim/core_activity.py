"""Switching activity of the core's RTL on real layers: Verilator toggle coverage of a small core.

    samhw estimate runs/bundle_ahcptq_w4a4 --core w4-16x16 --measure activity   (sw/estimate/measure.py)

For every layer kind of the co-simulation's acceptance set (``sim.core_cases.ACCEPTANCE``) the real
input codes of that layer (the first val image with a box and its first box, as ``samhw simulate``)
are cut to a small slice (``slice_inputs``: at most ``ROWS`` rows, ``KEYS`` keys, a ``CROP`` x ``CROP``
corner of a conv input), compiled for the core configuration with its PE array set to ``--pes`` (with
the output lookup the model run gives the layer, where the core holds it: ``lookup_steps``), and
run on a Verilator build with ``--coverage-toggle``, one batch per case, so each case has its own
coverage file. ``activity_of`` counts every signal bit's toggles, split by block (the PE array, the
lanes, the rest of the core; the simulation memory is left out) and by kind (register bits: assigned
in an ``always @(posedge clk)`` block of the generated Verilog; the other bits: combinational), and
the JSON keeps those sums with the run's cycles and the terms its PE array issued (cycle model), so
``sw.estimate.activity`` can turn them into toggles per bit per cycle.

The register port's program writes before each run (about 4 cycles per instruction) are inside the
coverage window; they are counted in ``setup_cycles`` and left in the sums (the core is idle then).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from hw.compiler.invocation import InvocationSpec
from hw.compiler.model import invocation_kind
from hw.compiler.program import build_program
from hw.core.config import CoreConfig
from hw.core.timing import run_timing
from sw.bundle import Bundle, CodesOutput, GemmLayer

from .core_cases import ACCEPTANCE, case_inputs
from .core_runner import TOP, CoreRun, CoreSimulator

ROWS, KEYS, CROP, OUTPUTS = 32, 32, 4, 32
# the softmax path (cores with one) apart from the rest of the core, whose rate would be diluted by its bits
# (idle outside SOFTMAX): the estimate prices the path with the unit's own measured rates
BLOCKS = (("array", ".compute.array"), ("lanes", ".compute.lanes"), ("softmax", ".compute.softmax"), ("core", ".core"))
LINE = re.compile(r"^C '(.*)' (\d+)$")


def take_outputs(layer, n: int):
    """A GEMM layer cut to its first ``n`` output channels (all of them for a depthwise conv)."""
    if not isinstance(layer, GemmLayer) or layer.out_channels <= n or getattr(layer, "depthwise", False):
        return layer
    w = layer.weights
    out = layer.output
    changes = {"multiplier": out.multiplier[:n], "shift": out.shift[:n]}
    if isinstance(out, CodesOutput):
        changes["zero_point"] = out.zero_point[:n]
    return dataclasses.replace(
        layer, weights=dataclasses.replace(w, codes=w.codes[:n], zero_point=w.zero_point[:n], scale=w.scale[:n]),
        bias=layer.bias[:n], bias_acc=layer.bias_acc[:n], output=dataclasses.replace(out, **changes))


def slice_inputs(op: str | None, kind: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A small real slice of one invocation's inputs, of the same rank."""
    if kind == "conv2d":
        x = inputs["input"]
        return {"input": x[:1, :, :CROP, :CROP]}
    if op == "scores":
        q, k = inputs["q"], inputs["k"]
        lead = (slice(0, 1),) * (q.ndim - 2)
        return {"q": q[lead + (slice(0, ROWS),)], "k": k[lead + (slice(0, KEYS),)]}
    if op == "values":
        p, v = inputs["probs"], inputs["v"]
        lead = (slice(0, 1),) * (p.ndim - 2)
        return {"probs": p[lead + (slice(0, ROWS), slice(0, KEYS))], "v": v[lead + (slice(0, KEYS),)]}
    x = inputs["input"]
    return {"input": x.reshape(-1, x.shape[-1])[:ROWS]}


def _unescape(name: str) -> str:
    return name.lstrip("\\").strip()


def _unmangle(name: str) -> str:
    """Verilator's coverage names spell a non-identifier character c as __0 followed by c's hex code."""
    return re.sub(r"__0([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def register_bits(verilog: str) -> dict[str, set[str]]:
    """Per module name (dotted instance path as Amaranth names it), the signals assigned in clocked blocks."""
    out: dict[str, set[str]] = defaultdict(set)
    module = None
    clocked = False
    for line in verilog.splitlines():
        stripped = line.strip()
        if stripped.startswith("module "):
            module = _unescape(stripped[len("module "):].split("(")[0])
            clocked = False
        elif stripped.startswith("always @(posedge"):
            clocked = True
        elif stripped.startswith("always") or stripped.startswith("assign") or stripped == "end" and False:
            clocked = False
        if clocked and "<=" in stripped:
            target = stripped.split("<=")[0].strip()
            target = re.sub(r"\[.*\]$", "", target).strip()
            out[module].add(_unescape(target))
        if stripped.startswith("endmodule"):
            module = None
    return out


def parse_coverage(path: Path) -> list[tuple[str, str, int]]:
    """(hierarchy, signal bit, toggle count) of every toggle point of a Verilator coverage.dat."""
    points = []
    for line in path.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if not match:
            continue
        fields = dict(item.split("\x02", 1) for item in match.group(1).split("\x01") if "\x02" in item)
        if not fields.get("page", "").startswith("v_toggle"):
            continue
        points.append((fields.get("h", ""), fields.get("o", ""), int(match.group(2))))
    return points


def block_of(hierarchy: str) -> str | None:
    if ".simmem" in hierarchy:
        return None
    for block, marker in BLOCKS:
        if marker in hierarchy:
            return block
    return None


def activity_of(points, registers: dict[str, set[str]]) -> dict:
    """Toggle and bit counts by block and by kind (register / combinational). Verilator keeps two points
    per bit (0->1 and 1->0): both are toggles, the bit is counted once."""
    sums = {b: {"register": [0, 0], "comb": [0, 0]} for b, _ in BLOCKS}
    for hierarchy, point, count in points:
        block = block_of(hierarchy)
        if block is None:
            continue
        module = hierarchy.split("TOP.", 1)[-1]
        bit, _, edge = point.rpartition(":")
        signal = _unmangle(re.sub(r"\[\d+\]$", "", bit)).strip()
        kind = "register" if signal in registers.get(module, ()) else "comb"
        sums[block][kind][0] += count
        sums[block][kind][1] += edge == "0->1"
    return {b: {k: {"toggles": t, "bits": n} for k, (t, n) in kinds.items()} for b, kinds in sums.items()}


def toggle_sums(points, registers: dict[str, set[str]]) -> dict:
    """Toggles and bits of a whole unit (all its points), register (clocked assignments of the Verilog)
    and combinational; each bit counted once, both of its points' toggles counted."""
    sums = {"register": [0, 0], "comb": [0, 0]}
    for hierarchy, point, count in points:
        module = hierarchy.split("TOP.", 1)[-1]
        bit, _, edge = point.rpartition(":")
        signal = _unmangle(re.sub(r"\[\d+\]$", "", bit)).strip()
        kind = "register" if signal in registers.get(module, ()) else "comb"
        sums[kind][0] += count
        sums[kind][1] += edge == "0->1"
    return {k: {"toggles": t, "bits": n} for k, (t, n) in sums.items()}


def small_config(config: CoreConfig, rows: int, cols: int) -> CoreConfig:
    return dataclasses.replace(config, rows=rows, cols=cols)


def measure(bundle: Bundle, config: CoreConfig, image: np.ndarray, box: np.ndarray, work: str,
            cases=ACCEPTANCE, log=print) -> dict:
    inputs = case_inputs(bundle, image, box, cases)
    programs = []
    for case in cases:
        full = bundle.layers[case.layer]
        layer = take_outputs(full, OUTPUTS)
        recorded, codes = inputs[case.layer, case.op]
        sliced = slice_inputs(case.op, layer.TAG, codes)
        # with its output lookup, where the model run has one (the core decides whether it holds it)
        spec = InvocationSpec.of(layer, case.op, {k: v.shape for k, v in sliced.items()}, recorded.lookup)
        program = build_program(config, [(spec, layer)], {})
        programs.append((case, layer, sliced, program))
    words = max(p.total_words for *_, p in programs)
    memory_words = 1 << max(10, (words - 1).bit_length())
    sim = CoreSimulator(config, memory_words, work, coverage=True)
    registers = None
    out = []
    for case, layer, sliced, program in programs:
        start = time.perf_counter()
        inv = program.invocations[0]
        memory = program.memory()
        inv.write_inputs(memory, config.bus_bits, **sliced)
        from hw.compiler.invocation import plan_invocation
        from sw.estimate.costs import lane_work

        tiles, lane_cycles, _, out_words = lane_work(config, plan_invocation(config, layer, inv.spec))
        model_cycles = terms = 0
        runs = []
        for i, streams in enumerate(inv.parts):
            timing = run_timing(config, streams, memory)
            model_cycles += timing.cycles
            terms += sum(g.terms for g in timing.gemms)
            runs.append(CoreRun(streams, memory if i == 0 else None))
        name = f"act_{case.layer}{'_' + case.op if case.op else ''}".replace(".", "_")
        results = sim.run_batch(runs, name=name)
        if registers is None:
            registers = register_bits((sim.build_dir / f"{TOP}.v").read_text())
        points = parse_coverage(sim.coverage_file(name))
        cycles = sum(r.cycles for r in results)
        setup = sum(4 * len(s) + 2 for s in inv.parts)
        entry = {"layer": case.layer, "op": case.op, "kind": invocation_kind(layer, case.op),
                 "lookup_steps": len(inv.spec.lookup.steps) if inv.spec.lookup else 0,
                 "shapes": {k: list(v.shape) for k, v in sliced.items()}, "cycles": cycles,
                 "model_cycles": model_cycles, "setup_cycles": setup, "terms": terms, "macs": inv.macs,
                 "tiles": tiles, "lane_cycles": lane_cycles, "out_words": out_words,
                 "blocks": activity_of(points, registers), "seconds": round(time.perf_counter() - start, 1)}
        log(f"{entry['kind']}: {case.layer}{':' + case.op if case.op else ''} {entry['shapes']}: {cycles} cycles "
            f"(model {model_cycles}), {len(points)} toggle points, {entry['seconds']} s")
        out.append(entry)
    return {"config": config.to_dict(), "config_digest": config.digest, "pes": config.pes,
            "bundle": {"model": bundle.header.model, "recipe": bundle.header.recipe,
                       "bits": f"W{bundle.header.weight_bits}A{bundle.header.act_bits}"},
            "slice": {"rows": ROWS, "keys": KEYS, "crop": CROP}, "cases": out}

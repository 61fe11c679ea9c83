"""Randomized co-simulation of the core: random layers of every kind (``sim.random_layers``) compiled
for a core, run on its Verilator build many layers per simulator process (``sim.core_runner``), and
checked three ways, as ``sim.core_cases.simulate_case`` does for real layers:

- every output element against the integer reference (``sw/ref``, via ``reference_outputs``);
- every word of the output regions the program stores against the functional model (``hw.fsim``);
- the RTL's cycle counter of every run of the core against the cycle model (``hw.core.timing``), and
  its per-unit instruction counts against the streams.

    sim = CoreSimulator(config, memory_words, work)
    results = cosim_cases(sim, config, cases)          # [LayerResult], one per case

``scripts/core_random_cosim.py`` drives it per op kind and writes the report; ``tests/test_core_verilator.py``
runs a small sample.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np

from hw.compiler import CompileError, compile_layer
from hw.compiler.model import invocation_kind, reference_outputs
from hw.core.config import PRESETS, CoreConfig, CoreConfigError, load_core_config
from hw.core.timing import run_timing
from hw.fsim import run as fsim_run

from .core_runner import CoreResult, CoreRun, CoreSimulator
from .random_layers import RandomCase, random_case

UNITS = ("load", "compute", "store")
# Buffers of the co-simulation cores: small enough that random layers of a few thousand outputs, which
# the presets' buffers would hold whole, are tiled into several double-buffered jobs, a share of them
# single-buffered (a job larger than half the ACT buffer) and into several runs of the core (streams
# longer than prog_words).
SMALL_BUFFERS = dict(act_words=128, wgt_words=128, out_words=128, param_words=128, prog_words=32)


class TooLarge(Exception):
    """A random layer whose program does not fit the simulation memory."""


def cosim_config(spec: str) -> CoreConfig:
    """``w8-RxK`` / ``w4-RxK`` (R, K < 16): that preset with an R x K array and ``SMALL_BUFFERS``; a preset
    name (``w8-16x16``) or a JSON file of CoreConfig fields as ``load_core_config``."""
    name, _, shape = str(spec).rpartition("-")
    if str(spec) not in PRESETS and f"{name}-16x16" in PRESETS and "x" in shape:
        try:
            rows, cols = (int(v) for v in shape.split("x"))
        except ValueError:
            raise CoreConfigError(f"{spec}: not a core name of the form w8-4x4") from None
        return dataclasses.replace(PRESETS[f"{name}-16x16"], rows=rows, cols=cols, **SMALL_BUFFERS)
    return load_core_config(spec)


@dataclass
class Prepared:
    """A compiled random layer with everything the RTL's results are compared with."""

    case: RandomCase
    inv: object                       # hw.compiler.invocation.Invocation
    memory: np.ndarray                # the external memory image the first run starts from
    reads: list[tuple[int, int]]      # output regions (first word, words)
    fsim_words: np.ndarray            # the functional model's words of ``reads``, concatenated
    model_cycles: list[int]           # the cycle model's count of each run (part)
    want: dict[str, np.ndarray]       # sw/ref outputs
    seconds: float                    # compile + fsim + cycle model + sw/ref
    index: int = -1                   # place in its kind's random stream

    @property
    def elements(self) -> int:
        return sum(v.size for v in self.want.values())

    @property
    def words(self) -> int:
        return sum(n for _, n in self.reads)


@dataclass
class LayerResult:
    kind: str                         # the random-layer kind (``random_layers.KINDS``)
    invocation_kind: str              # hw.compiler.model.invocation_kind: e.g. "A.V AGQ tau=4"
    note: str
    parts: int
    elements: int
    mismatches: int
    words: int
    word_mismatches: int
    cycles: int
    model_cycles: int
    cycle_mismatches: int             # runs whose RTL cycle count differs from the model
    count_mismatches: int             # runs whose executed-instruction counts differ from the streams
    macs: int
    gemms: int = 0                    # GEMM instructions (jobs)
    extremes: tuple = ()              # the case's extreme input / weight modes
    output: str = ""                  # output format (``output_label``)
    slots: int = 2                    # 2: double-buffered jobs, 1: single-buffered
    index: int = -1
    hung: bool = False                # a run of the core never finished (its outputs count as mismatches)

    @property
    def ok(self) -> bool:
        return not (self.hung or self.mismatches or self.word_mismatches or self.cycle_mismatches
                    or self.count_mismatches)


def prepare(config: CoreConfig, case: RandomCase, memory_words: int) -> Prepared:
    """Compile ``case`` alone for ``config`` and run the functional model, the cycle model and sw/ref.
    CompileError when the compiler refuses it; TooLarge when its memory exceeds ``memory_words``."""
    start = time.perf_counter()
    program = compile_layer(config, case.layer, case.op, case.shapes)
    if program.total_words > memory_words:
        raise TooLarge(f"{case.kind}: the program needs {program.total_words} memory words, the simulation "
                         f"memory has {memory_words}")
    inv = program.invocations[0]
    memory = program.memory()
    inv.write_inputs(memory, config.bus_bits, **case.inputs)
    reads = [(r.base, r.words) for r in inv.outputs.values()]
    state, model_cycles = memory, []
    for streams in inv.parts:
        model_cycles.append(run_timing(config, streams, state).cycles)
        state = fsim_run(config, streams, state)
    words = state.reshape(-1, config.bus_bytes)
    fsim_words = np.concatenate([words[b:b + n] for b, n in reads])
    want = reference_outputs(case.layer, case.op, case.inputs)
    return Prepared(case, inv, memory, reads, fsim_words, model_cycles, want, time.perf_counter() - start)


def draw_prepared(rng, kind: str, config: CoreConfig, memory_words: int, max_reduction: int = 128,
                  refusals: list | None = None) -> Prepared:
    """The next random layer of ``kind`` that compiles for ``config`` and fits the memory (refused
    ones are drawn again, their one-line reasons appended to ``refusals``)."""
    for _ in range(100):
        case = random_case(rng, kind, config, max_reduction)
        try:
            return prepare(config, case, memory_words)
        except (CompileError, TooLarge) as exc:
            if refusals is not None:
                refusals.append(f"{case.note}: {exc}")
    raise RuntimeError(f"{kind}: 100 random layers in a row were refused (last: {refusals[-1] if refusals else '?'})")


def core_runs(prep: Prepared) -> list[CoreRun]:
    """The invocation's runs of the core: the first loads the image, the others continue on the memory
    the previous left; the last reads the output regions back."""
    last = len(prep.inv.parts) - 1
    return [CoreRun(streams, prep.memory if i == 0 else None, read=prep.reads if i == last else [])
            for i, streams in enumerate(prep.inv.parts)]


def check(config: CoreConfig, prep: Prepared, results) -> LayerResult:
    """Compare one layer's RTL results (one CoreResult per part) with sw/ref, fsim and the cycle model."""
    inv, case = prep.inv, prep.case
    got_words = results[-1].words
    word_mismatches = int(np.count_nonzero((got_words != prep.fsim_words).any(axis=1)))
    got_memory = np.zeros(max(b + n for b, n in prep.reads) * config.bus_bytes, np.uint8)
    view = got_memory.reshape(-1, config.bus_bytes)
    at = 0
    for base, count in prep.reads:
        view[base:base + count] = got_words[at:at + count]
        at += count
    got = inv.read_outputs(got_memory, config.bus_bits)
    mismatches = sum(int(np.count_nonzero(got[k] != v)) for k, v in prep.want.items())
    cycle_mismatches = sum(int(r.cycles != m) for r, m in zip(results, prep.model_cycles))
    count_mismatches = sum(int(r.counts != {u: len(getattr(p, u)) for u in UNITS}) for r, p in zip(results, inv.parts))
    return LayerResult(case.kind, invocation_kind(case.layer, case.op), case.note, len(inv.parts), prep.elements,
                       mismatches, prep.words, word_mismatches, sum(r.cycles for r in results), sum(prep.model_cycles),
                       cycle_mismatches, count_mismatches, inv.macs, inv.gemms, case.extremes, output_label(case, inv),
                       inv.slots, prep.index)


def output_label(case: RandomCase, inv) -> str:
    """The output's format: "codes6", "host12 (16-bit)", "scores (32-bit)"."""
    out, bits = getattr(case.layer, "output", None), max(r.bits for r in inv.outputs.values())
    if case.op == "scores":
        return f"scores ({bits}-bit)"
    if hasattr(out, "host_bits"):
        return f"host{out.host_bits} ({bits}-bit)"
    return f"codes{out.act_bits}"


def run_batch_partial(sim: CoreSimulator, runs: list[CoreRun], name: str) -> tuple[list[CoreResult], int | None]:
    """``sim.run_batch``, except that a batch the testbench stops at a run past its ``timeout_cycles``
    (the core never finished) returns the results of the runs before it and that run's index (None
    when every run finished). Other failures raise."""
    job_dir = sim.build_dir / name
    job_dir.mkdir(parents=True, exist_ok=True)
    progress = job_dir / "progress.jsonl"
    progress.unlink(missing_ok=True)
    before = os.environ.get("SAMHW_PROGRESS")
    os.environ["SAMHW_PROGRESS"] = str(progress)   # sim.tb_core appends each finished run's counters
    try:
        return sim.run_batch(runs, name), None
    except RuntimeError:
        log = job_dir / "sim.log"
        if "SimTimeoutError" not in (log.read_text(errors="replace") if log.exists() else ""):
            raise
        done = [json.loads(line) for line in progress.read_text().splitlines()] if progress.exists() else []
        return [CoreResult(np.load(job_dir / f"result_{i}.npy"), r["cycles"], r["counts"])
                for i, r in enumerate(done)], len(done)
    finally:
        if before is None:
            os.environ.pop("SAMHW_PROGRESS", None)
        else:
            os.environ["SAMHW_PROGRESS"] = before


def hung(config: CoreConfig, prep: Prepared, part: int) -> LayerResult:
    """The result of a layer whose run ``part`` never finished: every output counts as a mismatch."""
    inv, case = prep.inv, prep.case
    return LayerResult(case.kind, invocation_kind(case.layer, case.op), f"{case.note} [run {part} of "
                       f"{len(inv.parts)} did not finish within {prep_timeout(prep.model_cycles[part])} cycles]",
                       len(inv.parts), prep.elements, prep.elements, prep.words, prep.words, 0,
                       sum(prep.model_cycles), 1, 1, inv.macs, inv.gemms, case.extremes, output_label(case, inv),
                       inv.slots, prep.index, hung=True)


def prep_timeout(model_cycles: int) -> int:
    """Cycles a run may take before the testbench gives up on it: twice the cycle model's count, plus
    a margin (a run the model times exactly never comes near it)."""
    return 2 * model_cycles + 20_000


def cosim_prepared(sim: CoreSimulator, config: CoreConfig, preps: list[Prepared], name: str = "random",
                   keep: bool = False, stats: dict | None = None) -> list[LayerResult]:
    """Every prepared layer in as few simulator processes as possible (one, unless a run hangs: then
    that layer is recorded as hung and the layers after it continue in a new process); one
    LayerResult each, in order. ``stats["processes"]`` counts the simulator processes."""
    results, pending, attempt = [], list(preps), 0
    while pending:
        runs, spans = [], []
        for prep in pending:
            layer_runs = core_runs(prep)
            for run, cycles in zip(layer_runs, prep.model_cycles):
                run.timeout_cycles = prep_timeout(cycles)
            spans.append((len(runs), len(layer_runs)))
            runs += layer_runs
        job = name if attempt == 0 else f"{name}_{attempt}"
        got, failed = run_batch_partial(sim, runs, job)
        if stats is not None:
            stats["processes"] = stats.get("processes", 0) + 1
        if not keep:
            shutil.rmtree(sim.build_dir / job, ignore_errors=True)
        if failed is None and len(got) != len(runs):
            raise RuntimeError(f"the simulator returned {len(got)} results for {len(runs)} runs")
        stop = len(pending)
        for k, (prep, (s, n)) in enumerate(zip(pending, spans)):
            if failed is not None and s + n > failed:
                results.append(hung(config, prep, failed - s))
                stop = k + 1
                break
            results.append(check(config, prep, got[s:s + n]))
        pending = pending[stop:]
        attempt += 1
    return results


def cosim_cases(sim: CoreSimulator, config: CoreConfig, cases: list[RandomCase], name: str = "random",
                keep: bool = False) -> list[LayerResult]:
    """``cases`` (which must compile) prepared and co-simulated in one simulator process."""
    return cosim_prepared(sim, config, [prepare(config, c, sim.memory_words) for c in cases], name, keep)


def total(results: list[LayerResult]) -> LayerResult:
    """The sums of ``results`` (kind and note of the first)."""
    sums = {f: sum(getattr(r, f) for r in results) for f in SUMMED}
    first = results[0] if results else None
    return LayerResult(first.kind if first else "", first.invocation_kind if first else "", "", **sums)


SUMMED = ("parts", "elements", "mismatches", "words", "word_mismatches", "cycles", "model_cycles", "cycle_mismatches",
          "count_mismatches", "macs", "gemms", "hung")

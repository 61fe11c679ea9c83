"""Randomized co-simulation of the core on Verilator: for each op kind, random layers (random shapes,
code widths, zero points, CAG group tables and multipliers, HLUQ levels, AGQ LUTs and shifts,
requantization constants, a share of inputs and weights at extreme codes: ``sim/random_layers.py``)
compiled for the core until at least N output words, all of a kind's runs in one Verilator process;
every output element compared with sw/ref, every output word the program stores with the functional
model, every run's cycle counter with the cycle model (``sim/random_cosim.py``).

    python scripts/core_random_cosim.py --core w8-4x4 --words 1000000 --seed 0 --report docs/core_random_cosim.md

``--core``: ``w8-RxK`` / ``w4-RxK`` (that preset with an R x K array and small buffers, so layers tile
into several jobs), a preset, or a JSON CoreConfig. One Verilator build per core, cached in
``--work``/core_<design digest>; several cores give a section each. The layers are a function of the
seed, the kind and the core's code widths and limits (the kind's random stream is seeded with
[seed, kind index]); progress goes to stderr. Exit status 1 on any mismatch (outputs, fsim words,
cycles or instruction counts).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hw.core.config import CoreConfig  # noqa: E402
from sim.core_runner import CoreSimulator  # noqa: E402
from sim.random_cosim import cosim_config, cosim_prepared, draw_prepared, total  # noqa: E402
from sim.random_layers import KINDS  # noqa: E402
from sw.atomic_file import write_atomic  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_kind(sim: CoreSimulator, config: CoreConfig, kind: str, words: int, seed: int, batch_layers: int,
             max_reduction: int, keep: bool) -> dict:
    start = time.perf_counter()
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    refusals: list[str] = []
    results, prep_s, sim_s, elements, index, batch, stats = [], 0.0, 0.0, 0, 0, 0, {}
    while elements < words:
        preps = []
        while elements < words and (not batch_layers or len(preps) < batch_layers):
            prep = draw_prepared(rng, kind, config, sim.memory_words, max_reduction, refusals)
            prep.index = index
            preps.append(prep)
            elements += prep.elements
            index += 1
        prep_s += sum(p.seconds for p in preps)
        model_cycles = sum(sum(p.model_cycles) for p in preps)
        log(f"{kind}: batch {batch}: {len(preps)} layers, {sum(p.elements for p in preps)} outputs, "
            f"{sum(len(p.inv.parts) for p in preps)} runs, {model_cycles} model cycles; simulating")
        t = time.perf_counter()
        got = cosim_prepared(sim, config, preps, name=f"random_{KINDS.index(kind)}_{batch}", keep=keep, stats=stats)
        dt = time.perf_counter() - t
        sim_s += dt
        results += got
        bad = [r for r in got if not r.ok]
        log(f"{kind}: batch {batch}: {dt:.0f} s in Verilator ({model_cycles / max(dt, 1e-9) / 1e3:.1f} k cycles/s "
            f"with the testbench), {elements}/{words} outputs, {len(bad)} layers with mismatches")
        for r in bad[:5]:
            log(f"  MISMATCH {kind} #{r.index}: {r.note}: {r.mismatches} outputs, {r.word_mismatches} words, "
                f"cycles {r.cycles} vs model {r.model_cycles}, {r.count_mismatches} count mismatches")
        batch += 1
    return {"kind": kind, "results": results, "refusals": refusals, "prep_s": prep_s, "sim_s": sim_s,
            "processes": stats.get("processes", 0), "wall_s": time.perf_counter() - start}


def coverage(results) -> str:
    """What the layers of one kind covered, in a few words."""
    inv = Counter(r.invocation_kind for r in results)
    parts = sum(r.parts > 1 for r in results)
    outs = Counter(r.output for r in results)
    extreme = sum(any(not m.startswith("weights") for m in r.extremes) for r in results)
    weights = sum(any(m.startswith("weights") for m in r.extremes) for r in results)
    text = ", ".join(f"{k} {v}" for k, v in sorted(inv.items()))
    text += f"; outputs {', '.join(f'{k} {v}' for k, v in sorted(outs.items()))}"
    single = sum(r.slots == 1 for r in results)
    jobs = int(np.median([r.gemms for r in results])) if results else 0
    return (f"{text}; {extreme} layers with extreme inputs, {weights} with extreme weights; median {jobs} jobs "
            f"(GEMMs) per layer, {single} layers single-buffered, {parts} in several runs of the core")


def describe(config: CoreConfig, name: str) -> str:
    return (f"`{name}` (digest `{config.digest}`): {config.rows}x{config.cols} PEs, {config.act_bits}-bit row and "
            f"{config.weight_bits}-bit column codes, buffers ACT {config.act_words} / WGT {config.wgt_words} / OUT "
            f"{config.out_words} / PARAM {config.param_words} words, {config.prog_words} instructions per unit, "
            f"max_shift {config.max_shift}, {config.pe_acc_bits}-bit PE accumulators, {config.max_segments} "
            f"segments, memory read latency {config.mem_read_latency}, write latency {config.mem_write_latency}")


def core_section(core: dict, seed: int) -> list[str]:
    config, kinds = core["config"], core["kinds"]
    rows, details = [], []
    for k in kinds:
        t = total(k["results"])
        rows.append(f"| {k['kind']} | {len(k['results'])} | {t.elements} | {t.mismatches} | {t.words} | "
                    f"{t.word_mismatches} | {t.cycles} | {t.model_cycles} | {t.cycle_mismatches} | "
                    f"{t.count_mismatches} | {t.hung} | {k['wall_s']:.0f} |")
        details.append(f"- **{k['kind']}**: {coverage(k['results'])}; {len(k['refusals'])} drawn layers refused "
                       f"by the compiler or too large for the memory, drawn again"
                       + (f" (first: {k['refusals'][0]})" if k["refusals"] else "") + ".")
    every = [r for k in kinds for r in k["results"]]
    t = total(every)
    sim_s = sum(k["sim_s"] for k in kinds)
    prep_s = sum(k["prep_s"] for k in kinds)
    bad = [r for r in every if not r.ok]
    lines = [
        f"## Core {describe(config, core['name'])}", "",
        "| op kind | layers | output words compared | mismatches | OUT words vs fsim | differ | RTL cycles | "
        "model cycles | cycle mismatches | count mismatches | hung | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows,
        f"| all | {len(every)} | {t.elements} | {t.mismatches} | {t.words} | {t.word_mismatches} | {t.cycles} | "
        f"{t.model_cycles} | {t.cycle_mismatches} | {t.count_mismatches} | {t.hung} | {core['wall_s']:.0f} |", "",
        *details, "",
        f"Time: {core['wall_s']:.0f} s on one CPU core: Verilator build {core['build_s']:.0f} s (0 when cached), "
        f"compile + functional model + cycle model + sw/ref {prep_s:.0f} s, "
        f"{sum(k['processes'] for k in kinds)} Verilator processes "
        f"{sim_s:.0f} s for {t.cycles} cycles ({t.cycles / max(sim_s, 1e-9) / 1e3:.0f} k cycles/s including "
        "process start, the testbench's memory loads, program writes and readback).", ""]
    if bad:
        lines += [f"Layers with mismatches ({len(bad)}; #index is the layer's place in its kind's random stream "
                  f"for this seed: `--core {core['name']} --seed {seed} --replay 'KIND:INDEX'` runs it alone):", "",
                  *[f"- {r.kind} #{r.index} ({r.note}): {r.mismatches} outputs differ from sw/ref, {r.word_mismatches} "
                    f"words from fsim, RTL {r.cycles} vs model {r.model_cycles} cycles, {r.count_mismatches} runs "
                    "with other instruction counts" for r in bad[:20]], ""]
    return lines


def write_report(path: Path, command: str, seed: int, words: int, cores: list[dict], total_s: float) -> None:
    every = total([r for c in cores for k in c["kinds"] for r in k["results"]])
    lines = [
        "# Randomized core co-simulation on Verilator", "",
        f"Generated by `{command}`; do not edit by hand.", "",
        f"Seed {seed}, at least {words} output words per op kind and core. Each layer is drawn at random "
        "(`sim/random_layers.py`): shapes with reductions of 8 to 128 terms, code widths of 2 to 8 bits, zero "
        "points (a share at the ends of the range), CAG group tables, channel orders and multipliers, HLUQ log "
        "levels, AGQ tau, Q and LUT entries, bias and requantization constants, outputs as 4- to 8-bit codes or "
        "2- to 32-bit host integers, and a share of inputs and weights at extreme codes (all lowest, all "
        "highest, alternating, each at one end, or a mix). Every constant that bounds an accumulator (group "
        "multipliers, AGQ Q and LUT) is drawn up to the limits the compiler checks, a share exactly at them. "
        "The layers depend on the seed, the kind and the core's code widths and limits only, so cores of one "
        "preset run the same ones. Each is compiled "
        "alone for the core; all runs of a kind's layers go through one Verilator process "
        "(`sim/random_cosim.py`, `sim/core_runner.py`, `sim/tb_core.py`). Every output element is compared "
        "with sw/ref, every word of the output regions with the functional model (hw/fsim), the RTL's cycle "
        "counter of every run of the core with the cycle model (hw/core/timing.py), and its executed-instruction "
        "counters with the streams. A run that does not finish within twice the model's cycles plus 20000 is "
        "stopped and its layer counted as hung, every output a mismatch (the layers after it continue in a "
        "new process). The cores have small buffers so that the layers tile into many jobs, some "
        "single-buffered, some in several runs of the core.", ""]
    for core in cores:
        lines += core_section(core, seed)
    finished = total([r for c in cores for k in c["kinds"] for r in k["results"] if not r.hung])
    lines += [f"Total: {total_s:.0f} s; {len(cores)} cores, {every.cycles} RTL cycles ({every.cycle_mismatches} runs "
              f"off the cycle model), {every.words} OUT words compared with fsim ({every.word_mismatches} differ), "
              f"{every.hung} hung layers. The layers whose runs all finished: {finished.elements} outputs with "
              f"{finished.mismatches} mismatches, {finished.words} OUT words with {finished.word_mismatches} differing "
              f"from fsim, {finished.cycles} RTL cycles with {finished.cycle_mismatches} runs off the cycle model.", "",
              f"compared {every.elements} words, {every.mismatches} mismatches", ""]
    write_atomic(path, "\n".join(lines))


def replay(args) -> int:
    """One layer of a kind's random stream, on each core: its description and result."""
    kind, _, index = args.replay.rpartition(":")
    if kind not in KINDS or not index.isdigit():
        raise SystemExit(f"--replay takes KIND:INDEX with KIND one of {', '.join(KINDS)}, got '{args.replay}'")
    failed = False
    for name in args.core:
        config = cosim_config(name)
        sim = CoreSimulator(config, args.memory_words, args.work)
        sim.build()
        rng = np.random.default_rng([args.seed, KINDS.index(kind)])
        for i in range(int(index) + 1):
            prep = draw_prepared(rng, kind, config, sim.memory_words, args.max_reduction)
        prep.index = int(index)
        r = cosim_prepared(sim, config, [prep], name=f"replay_{KINDS.index(kind)}_{index}", keep=args.keep)[0]
        print(f"{name} {kind} #{index}: {r.note}; {r.parts} runs, {r.gemms} GEMMs, slots {r.slots}; {r.elements} "
              f"outputs, {r.mismatches} mismatches; {r.words} words, {r.word_mismatches} differ from fsim; RTL "
              f"{r.cycles} cycles, model {r.model_cycles}{'; HUNG' if r.hung else ''}")
        failed |= not r.ok
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--core", nargs="+", default=["w8-4x4"],
                        help="one or more cores: w8-RxK / w4-RxK (small buffers), a preset or a JSON file")
    parser.add_argument("--words", type=int, default=1_000_000, help="output words per op kind (at least)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, help="markdown report to write")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), metavar="KIND",
                        help=f"op kinds (default all: {', '.join(KINDS)})")
    parser.add_argument("--work", default=str(ROOT / "sim_build"), help="Verilator build cache")
    parser.add_argument("--memory-words", type=int, default=1 << 16, help="simulation memory size in words")
    parser.add_argument("--batch-layers", type=int, default=0,
                        help="most layers per Verilator process (default 0: one process per kind)")
    parser.add_argument("--max-reduction", type=int, default=128, help="longest reduction of a random layer")
    parser.add_argument("--keep", action="store_true", help="keep the job folders (memory images, results)")
    parser.add_argument("--replay", metavar="KIND:INDEX",
                        help="run only layer INDEX of KIND's random stream (as a report names it) and print it")
    args = parser.parse_args(argv)
    if args.replay:
        return replay(args)
    command = "python scripts/core_random_cosim.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    start = time.perf_counter()
    cores = []
    for name in args.core:
        config = cosim_config(name)
        core_start = time.perf_counter()
        sim = CoreSimulator(config, args.memory_words, args.work)
        log(f"core {name} ({config.digest}): building {sim.build_dir} (cached when unchanged)")
        sim.build()
        build_s = time.perf_counter() - core_start
        log(f"build ready in {build_s:.0f} s")
        kinds = []
        for kind in args.kinds:
            kinds.append(run_kind(sim, config, kind, args.words, args.seed, args.batch_layers, args.max_reduction,
                                  args.keep))
            t = total(kinds[-1]["results"])
            log(f"{name} {kind}: {len(kinds[-1]['results'])} layers, {t.elements} outputs, {t.mismatches} mismatches, "
                f"{t.word_mismatches} fsim word mismatches, {t.cycle_mismatches} cycle mismatches, "
                f"{kinds[-1]['wall_s']:.0f} s")
        cores.append({"name": name, "config": config, "kinds": kinds, "build_s": build_s,
                      "wall_s": time.perf_counter() - core_start})
    total_s = time.perf_counter() - start
    if args.report:
        write_report(args.report, command, args.seed, args.words, cores, total_s)
    every = total([r for c in cores for k in c["kinds"] for r in k["results"]])
    print(f"compared {every.elements} words, {every.mismatches} mismatches")
    failed = every.mismatches or every.word_mismatches or every.cycle_mismatches or every.count_mismatches or every.hung
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

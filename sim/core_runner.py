"""Run programs on the core's RTL: generate the simulation top (core + AXI simulation memory) as
Verilog, build it once per configuration with Verilator through cocotb's Python runner, and execute
batches of runs in one simulator process (``sim.tb_core``).

    sim = CoreSimulator(config, memory_words, work="sim_build")
    [(memory_after_regions, cycles, counts), ...] = sim.run_batch([CoreRun(streams, memory, read=[(start, n)])])

Builds are cached in ``work/core_<design key>``, the key being a digest of the configuration, the memory
size and the source of every module the design is generated from: generating the Verilog of a 16 x 16
core takes minutes, so an unchanged design is neither regenerated nor rebuilt.

``CoreSimulator(..., coverage=True)`` builds a separate design with Verilator's toggle coverage
(``--coverage-toggle``): each batch then also leaves ``coverage_file(name)``, every signal bit's toggle
count over the batch, which ``sim.core_activity`` turns into the activity of the energy estimate.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hw.core.config import CoreConfig
from hw.core.simmem import STORAGE_MODULE, STORAGE_VERILOG
from hw.core.streams import Streams

from .verilator import WAIVERS, verilator_runner

ROOT = Path(__file__).resolve().parents[1]
TOP = "core_simtop"
# Only the top level's own signals (its ports: clock, reset, register port, done) and the simulation
# memory's storage array are made public: cocotb drives the ports and writes and reads the storage
# word by word (the fast path), and everything else stays optimizable.
BUILD_ARGS = ["-Wall", "-j", "1", "-O3"]
PUBLIC_STORAGE = (f'`verilator_config\npublic_flat_rw -module "{TOP}" -var "*"\n'
                  f'public_flat_rw -module "{STORAGE_MODULE}" -var "mem"\n')


@dataclass
class CoreRun:
    streams: Streams
    memory: np.ndarray | None               # flat uint8 external memory image; None: keep the last run's
    read: list[tuple[int, int]] = field(default_factory=list)  # (first word, words) to read back
    timeout_cycles: int = 100_000_000


@dataclass
class CoreResult:
    words: np.ndarray       # [sum of read counts, bus_bytes] uint8, in the order of ``read``
    cycles: int
    counts: dict[str, int]

    def region(self, run: CoreRun, index: int) -> np.ndarray:
        start = sum(n for _, n in run.read[:index])
        return self.words[start:start + run.read[index][1]]


def simulation_verilog(config: CoreConfig, memory_words: int) -> str:
    from amaranth.back import verilog

    from hw.core.simtop import SimTop

    top = SimTop(config, memory_words, verilog_storage=True)
    return verilog.convert(top, name=TOP, emit_src=False)


COVERAGE_ARGS = ["--coverage-toggle"]


def design_key(config: CoreConfig, memory_words: int, coverage: bool = False) -> str:
    args = BUILD_ARGS + (COVERAGE_ARGS if coverage else [])
    h = hashlib.sha256(f"{config.digest} {memory_words} {' '.join(args)} {PUBLIC_STORAGE}".encode())
    for folder in ("hw/core", "hw/units"):
        for path in sorted((ROOT / folder).glob("*.py")) + sorted((ROOT / folder).glob("*.v")):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


class CoreSimulator:
    def __init__(self, config: CoreConfig, memory_words: int, work: str | Path = "sim_build", coverage: bool = False):
        self.config, self.memory_words, self.coverage = config, memory_words, coverage
        self.work = Path(work).resolve()
        self.build_dir = self.work / f"core_{design_key(config, memory_words, coverage)}"
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.verilog = self.build_dir / f"{TOP}.v"
        if not self.verilog.exists():
            text = simulation_verilog(config, memory_words)
            tmp = self.verilog.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.verilog)  # a half-written file would pass as a cached design
        (self.build_dir / "public.vlt").write_text(PUBLIC_STORAGE)
        self._built = False

    def build(self) -> None:
        import cocotb_tools.runner

        # One make job: parallel jobs raced on Verilator's precompiled header on this machine.
        cocotb_tools.runner.MAX_PARALLEL_BUILD_JOBS = 1
        runner = verilator_runner()
        runner.build(sources=[str(WAIVERS), str(self.build_dir / "public.vlt"), str(STORAGE_VERILOG), str(self.verilog)], hdl_toplevel=TOP,
                     build_dir=str(self.build_dir), build_args=BUILD_ARGS + (COVERAGE_ARGS if self.coverage else []),
                     always=False,
                     log_file=str(self.build_dir / "build.log"))
        self._runner = runner
        self._built = True

    def run_batch(self, runs: list[CoreRun], name: str = "job") -> list[CoreResult]:
        if not self._built:
            self.build()
        job_dir = self.build_dir / name
        job_dir.mkdir(exist_ok=True)
        job = {"bus_bytes": self.config.bus_bytes, "runs": []}
        for i, run in enumerate(runs):
            run.streams.check(self.config)
            if run.memory is not None and run.memory.size > self.memory_words * self.config.bus_bytes:
                raise ValueError(f"run {i}: memory image of {run.memory.size} bytes exceeds the simulation memory "
                                 f"({self.memory_words} words of {self.config.bus_bytes} bytes)")
            if run.memory is not None:
                np.save(job_dir / f"memory_{i}.npy", run.memory)
            elif i == 0:
                raise ValueError("the first run of a batch needs a memory image")
            job["runs"].append({
                "memory": str(job_dir / f"memory_{i}.npy") if run.memory is not None else None,
                "result": str(job_dir / f"result_{i}.npy"),
                "streams": {u: [f"{w:x}" for w in getattr(run.streams, u)] for u in ("load", "compute", "store")},
                "read": [list(r) for r in run.read], "timeout_cycles": run.timeout_cycles,
                "clear": [list(r) for r in _stored_ranges(run.streams)]})
        job_path, result_path = job_dir / "job.json", job_dir / "result.json"
        job_path.write_text(json.dumps(job))
        result_path.unlink(missing_ok=True)
        plusargs = []
        if self.coverage:
            self.coverage_file(name).unlink(missing_ok=True)
            plusargs.append(f"+verilator+coverage+file+{self.coverage_file(name)}")
        pythonpath = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        try:
            self._runner.test(test_module="sim.tb_core", hdl_toplevel=TOP, build_dir=str(self.build_dir),
                              test_dir=str(job_dir), log_file=str(job_dir / "sim.log"), plusargs=plusargs,
                              extra_env={"SAMHW_JOB": str(job_path), "SAMHW_RESULT": str(result_path),
                                         "PYTHONPATH": pythonpath})
        except SystemExit:
            pass  # under pytest the runner exits on a failed cocotb test; the result file says what ran
        if not result_path.exists():
            raise RuntimeError(f"the core testbench wrote no result (see {job_dir / 'sim.log'})")
        got = json.loads(result_path.read_text())
        return [CoreResult(np.load(job_dir / f"result_{i}.npy"), r["cycles"], r["counts"]) for i, r in enumerate(got)]


    def coverage_file(self, name: str = "job") -> Path:
        """Where a coverage build leaves the toggle counts of batch ``name``."""
        return self.build_dir / name / "coverage.dat"


def _stored_ranges(streams: Streams) -> list[tuple[int, int]]:
    """Word ranges of external memory the STORE instructions write (cleared after each run)."""
    out = []
    for ins in streams.decoded("store"):
        if getattr(ins, "rows", 0):
            for r in range(ins.rows):
                out.append((ins.ext_addr + r * ins.ext_stride, ins.row_words))
    return out

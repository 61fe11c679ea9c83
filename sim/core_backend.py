"""The core's RTL as a runtime backend (``hw.runtime.Backend``): one persistent Verilator process for a
whole model run, memory moved in bulk.

    with VerilatorBackend(config, memory_words, work="sim_build") as backend:
        result = hw.runtime.run_model(bundle, program, backend, image, boxes)

``CoreServer`` starts the design's simulator (built and cached by ``sim.core_runner.CoreSimulator``)
once, running the cocotb test ``sim.tb_core_server``, and talks to it over a local TCP connection, one
JSON request per line: load, run, dump. Memory never crosses VPI word by word: the client writes a
``$readmemh`` file (hex words, ``@address`` lines, only the words that change) and the simulation memory
reads it in C++ (``hw/core/sim_storage.v``'s bulk port); outputs come back as a ``$writememh`` file.

``VerilatorBackend`` keeps the simulation memory equal to what ``FsimBackend`` starts each invocation
from (the static image once; per invocation the words the previous one wrote or loaded are zeroed and
the new inputs written), runs every part of the invocation on the RTL, reads the output regions back,
and compares itself with the functional model and the cycle model on the same inputs: every output word,
and every run's cycle counter. It returns the RTL's outputs and cycles.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

from hw.core.config import CoreConfig
from hw.runtime.backend import Backend, FsimBackend, Outcome

from .core_runner import ROOT, TOP, CoreSimulator, _stored_ranges

_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")
CONNECT_SECONDS = 600          # the simulator's start (loading a large design) before it connects


def hex_lines(words: np.ndarray) -> bytes:
    """[n, bus_bytes] little-endian words -> $readmemh lines (most significant hex digit first)."""
    words = np.ascontiguousarray(words, np.uint8)
    n, width = words.shape
    out = np.empty((n, 2 * width + 1), np.uint8)
    out[:, :-1] = np.frombuffer(_HEX[words[:, ::-1]].tobytes(), np.uint8).reshape(n, 2 * width)
    out[:, -1] = ord("\n")
    return out.tobytes()


def memh_file(blocks: list[tuple[int, np.ndarray]]) -> bytes:
    """A $readmemh file writing each (first word, words [n, bus_bytes]) block in order."""
    return b"".join(f"@{first:x}\n".encode() + hex_lines(words) for first, words in blocks if len(words))


def parse_memh(text: bytes, count: int, bus_bytes: int) -> np.ndarray:
    """The words of a $writememh file -> [count, bus_bytes] little-endian uint8."""
    lines = [ln for ln in (raw.split(b"//", 1)[0].strip() for raw in text.splitlines()) if ln and not ln.startswith(b"@")]
    if len(lines) != count:
        raise RuntimeError(f"memory dump has {len(lines)} words, expected {count}")
    digits = 2 * bus_bytes
    joined = b"".join(ln.rjust(digits, b"0") if len(ln) != digits else ln for ln in lines)
    return np.frombuffer(bytes.fromhex(joined.decode()), np.uint8).reshape(count, bus_bytes)[:, ::-1].copy()


def nonzero_runs(image: np.ndarray, bus_bytes: int, gap: int = 16) -> list[tuple[int, np.ndarray]]:
    """Blocks of ``image``'s words that cover every non-zero word (runs closer than ``gap`` words merged)."""
    words = image.reshape(-1, bus_bytes)
    nz = np.flatnonzero(words.any(axis=1))
    if not nz.size:
        return []
    breaks = np.flatnonzero(np.diff(nz) > gap)
    starts = np.concatenate([[nz[0]], nz[breaks + 1]])
    ends = np.concatenate([nz[breaks], [nz[-1]]]) + 1
    return [(int(s), words[s:e]) for s, e in zip(starts, ends)]


class CoreServer:
    """One simulator process of a core build, serving load / run / dump requests (module docstring)."""

    def __init__(self, sim: CoreSimulator, name: str = "serve"):
        if not sim._built:
            sim.build()
        self.sim, self.config = sim, sim.config
        self.dir = sim.build_dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.load_path, self.dump_path = self.dir / "load.hex", self.dir / "dump.hex"
        self.log = self.dir / "sim.log"
        self.cycles = 0
        self._failure: BaseException | None = None
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(1.0)
        port = listener.getsockname()[1]
        runner = copy.copy(sim._runner)  # its own test() settings; the build is shared
        pythonpath = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        kwargs = dict(test_module="sim.tb_core_server", hdl_toplevel=TOP, build_dir=str(sim.build_dir),
                      test_dir=str(self.dir), log_file=str(self.log),
                      plusargs=[f"+samhw_load={self.load_path}", f"+samhw_dump={self.dump_path}"],
                      extra_env={"SAMHW_SERVE": f"127.0.0.1:{port}", "SAMHW_BUS_BYTES": str(self.config.bus_bytes),
                                 "PYTHONPATH": pythonpath})
        self.thread = threading.Thread(target=self._simulate, args=(runner, kwargs), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + CONNECT_SECONDS
        try:
            while True:
                try:
                    conn, _ = listener.accept()
                    break
                except socket.timeout:
                    if not self.thread.is_alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"the core simulator did not start (see {self.log})") from None
        finally:
            listener.close()
        conn.settimeout(None)
        self.conn = conn
        self.stream = conn.makefile("rwb")
        self._reply()

    def _simulate(self, runner, kwargs) -> None:
        try:
            runner.test(**kwargs)
        except BaseException as exc:  # SystemExit under pytest on a failed cocotb test
            self._failure = exc

    def _reply(self) -> dict:
        line = self.stream.readline()
        if not line:
            raise RuntimeError(f"the core simulator stopped (see {self.log})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"core simulator: {reply['error']} (see {self.log})")
        return reply

    def request(self, **request) -> dict:
        self.stream.write(json.dumps(request).encode() + b"\n")
        self.stream.flush()
        return self._reply()

    # ---- memory and runs --------------------------------------------------------------------
    def load(self, blocks: list[tuple[int, np.ndarray]]) -> int:
        """Write blocks (first word, words [n, bus_bytes]) into the simulation memory, in order; returns
        the words written."""
        blocks = [(f, w) for f, w in blocks if len(w)]
        if not blocks:
            return 0
        self.load_path.write_bytes(memh_file(blocks))
        self.request(op="load")
        return sum(len(w) for _, w in blocks)

    def dump(self, first: int, count: int) -> np.ndarray:
        """Words first .. first + count - 1 of the simulation memory, [count, bus_bytes]."""
        if count == 0:
            return np.zeros((0, self.config.bus_bytes), np.uint8)
        self.dump_path.unlink(missing_ok=True)
        self.request(op="dump", first=first, last=first + count - 1)
        return parse_memh(self.dump_path.read_bytes(), count, self.config.bus_bytes)

    def run(self, streams, timeout_cycles: int = 100_000_000) -> dict:
        """One run of the core: its three programs, start, done; the cycle counter and instruction counts."""
        streams.check(self.config)
        reply = self.request(op="run", timeout_cycles=int(timeout_cycles),
                             streams={u: [f"{w:x}" for w in getattr(streams, u)] for u in ("load", "compute", "store")})
        self.cycles += reply["cycles"]
        return reply

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            self.request(op="quit")
        except (OSError, RuntimeError, ValueError):
            pass
        for closer in (self.stream.close, self.conn.close):
            try:
                closer()
            except OSError:
                pass
        self.conn = None
        self.thread.join(timeout=60)


def _ranges_of(regions) -> list[tuple[int, int]]:
    return [(r.base, r.words) for r in regions]


def word_runs(ranges: list[tuple[int, int]], words: int, minus: list[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """The words of ``ranges`` (first, count) that are not in ``minus``, as sorted disjoint runs."""
    mask = np.zeros(words + 1, bool)
    for first, count in ranges:
        mask[first:first + count] = True
    for first, count in minus:
        mask[first:first + count] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask]).astype(np.int8)))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]


class VerilatorBackend(Backend):
    """The core's RTL (module docstring); every output word checked against the functional model."""

    name = "verilator"

    def __init__(self, config: CoreConfig, memory_words: int, work: str | Path = "sim_build", name: str = "serve"):
        self.config, self.memory_words, self.work, self.server_name = config, memory_words, work, name
        self.sim = CoreSimulator(config, memory_words, work)
        self.fsim = FsimBackend()
        self.server: CoreServer | None = None
        self.dirty: list[tuple[int, int]] = []
        self.loaded_words = 0
        self.seconds = {"rtl": 0.0, "memory": 0.0, "fsim": 0.0}   # where the backend's wall time went

    def describe(self) -> str:
        return f"verilator ({self.sim.build_dir})"

    def open(self, program) -> None:
        if program.config.digest != self.config.digest:
            raise ValueError(f"program for core {program.config.digest}, this simulator is core {self.config.digest}")
        if program.total_words > self.memory_words:
            raise ValueError(f"program needs {program.total_words} memory words, the simulation memory has "
                             f"{self.memory_words}")
        if self.server is None:
            self.server = CoreServer(self.sim, self.server_name)
        else:  # a new program on the running simulator: clear what the previous one wrote or loaded
            self.server.load([(b, np.zeros((n, self.config.bus_bytes), np.uint8)) for b, n in self.dirty])
        self.fsim.open(program)
        self.loaded_words += self.server.load(nonzero_runs(program.image, self.config.bus_bytes))
        self.dirty = []
        self.program = program

    def run(self, inv, inputs: dict[str, np.ndarray]) -> Outcome:
        start = time.perf_counter()
        bb, bus = self.config.bus_bytes, self.config.bus_bits
        memory, model_cycles = self.fsim.execute(inv, self.fsim.prepare(inv, inputs))
        mark = time.perf_counter()
        self.seconds["fsim"] += mark - start
        written = _ranges_of(inv.inputs.values())
        blocks = [(b, np.zeros((n, bb), np.uint8)) for b, n in word_runs(self.dirty, self.memory_words, written)]
        blocks += [(base, data.reshape(-1, bb)) for base, data in inv.input_blocks(bus, **inputs)]
        self.loaded_words += self.server.load(blocks)
        cycles = []
        loaded = time.perf_counter()
        for streams, model in zip(inv.parts, model_cycles):
            reply = self.server.run(streams, timeout_cycles=2 * model + 100_000)
            cycles.append(int(reply["cycles"]))
        ran = time.perf_counter()
        self.seconds["memory"] += loaded - mark
        self.seconds["rtl"] += ran - loaded
        words = 0
        got = np.zeros_like(memory)
        view, ref = got.reshape(-1, bb), memory.reshape(-1, bb)
        mismatches = 0
        for region in inv.outputs.values():
            block = self.server.dump(region.base, region.words)
            view[region.base:region.base + region.words] = block
            want = ref[region.base:region.base + region.words]
            mismatches += int(np.count_nonzero((block != want).any(axis=1)))
            words += region.words
        self.seconds["memory"] += time.perf_counter() - ran
        outputs = inv.read_outputs(got, bus)
        stored = [r for streams in inv.parts for r in _stored_ranges(streams)]
        self.dirty = word_runs(written + _ranges_of(inv.outputs.values()) + stored, self.memory_words)
        return Outcome(outputs, sum(cycles), cycles, time.perf_counter() - start, words=words,
                       word_mismatches=mismatches, model_cycles=sum(model_cycles))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

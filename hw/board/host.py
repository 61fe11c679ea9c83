"""The host driver of the board (numpy only): the framed link protocol (``protocol.py``) over any byte
stream, and on top of it the runs of the core, with the contract of the simulator's runs.

    transport = SerialTransport("/dev/ttyUSB0", baud=3_000_000)   # or the co-simulation's transport
    link = BoardLink(transport)                                     # reads the board's STATUS once
    runner = BoardRunner(link, config)                              # checks the board's core is ``config``
    [CoreResult(words, cycles, counts), ...] = runner.run_batch([CoreRun(streams, memory, read=[...]), ...])
    with BoardBackend(link, config) as backend: ...                 # hw.runtime's backend interface

A ``Transport`` has ``write(bytes)``, ``read(n, timeout_s) -> bytes`` (fewer bytes when the timeout
passes), ``baud`` and ``latency_s`` (what the answer timeouts add to the bytes' time on the line: USB
latency on a real port, 0 in simulation, where the seconds are simulated ones). ``BoardLink`` answers
every request with the answer's payload or raises ``LinkError``: an answer that does not come, comes
with a bad CRC or reports a line error (ERR_CRC, ERR_TIMEOUT) is retried after the line has been quiet
for longer than the board's byte timeout (``retries`` times); an answer with ERR_BUSY, ERR_RANGE or
ERR_COMMAND is raised at once.

External memory: the driver keeps a shadow of the board's memory (which words it knows and their
contents) and sends only the words of an image that the board does not already hold; words the core's
STORE instructions write become unknown until read back. So a layer's static image (weights, constants,
descriptors) crosses the link once per program and each run sends only its inputs.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import numpy as np

from hw.core import regs
from hw.core.streams import UNITS

from . import protocol as P


class LinkError(RuntimeError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class Transport:
    """A byte stream to the board (the interface; see the module docstring)."""

    baud: float = 3_000_000
    latency_s: float = 0.05

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, n: int, timeout_s: float) -> bytes:
        raise NotImplementedError

    def now(self) -> float:
        """Seconds on the transport's clock (simulated time in a simulation)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        pass


class SerialTransport(Transport):
    """A serial port through pyserial (``pip install pyserial``), 8N1."""

    latency_s = 0.1

    def __init__(self, port: str, baud: int = 3_000_000):
        try:
            import serial
        except ImportError:
            raise LinkError("the board's serial port needs pyserial: pip install pyserial") from None
        self.baud = baud
        self.port = serial.Serial(port, baud, timeout=1.0)
        self.port.reset_input_buffer()

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read(self, n: int, timeout_s: float) -> bytes:
        self.port.timeout = timeout_s
        return self.port.read(n)

    def close(self) -> None:
        self.port.close()


@dataclass(frozen=True)
class BoardStatus:
    busy: bool
    done: bool
    flags: int
    error_answers: int
    mem_words: int
    clock_hz: int
    divisor: int
    stage_bytes: int
    version: int
    timeout_cycles: int

    @classmethod
    def parse(cls, payload: bytes) -> "BoardStatus":
        flags, errors, mem_words, khz, info, timeout = struct.unpack(f"<{P.STATUS_WORDS}I", payload)
        return cls(bool(flags & P.FLAG_BUSY), bool(flags & P.FLAG_DONE), flags, errors, mem_words, khz * 1000,
                   info & 0xFFFF, 1 << ((info >> 16) & 0xFF), info >> 24, timeout)

    @property
    def timeout_s(self) -> float:
        return self.timeout_cycles / self.clock_hz if self.clock_hz else 0.05


class BoardLink:
    def __init__(self, transport: Transport, bus_bytes: int = 32, retries: int = 3, timeout_s: float | None = None):
        self.transport, self.bus_bytes, self.retries = transport, bus_bytes, retries
        # how long the line stays quiet before a retry: twice the board's byte timeout (from STATUS) unless given
        self.quiet_s = timeout_s or 0.05
        self.frames = self.bytes_sent = self.bytes_received = self.retried = 0
        self.board = self.status()
        if self.board.version != P.VERSION:
            raise LinkError(f"the board speaks link protocol version {self.board.version}, this driver {P.VERSION}")
        if timeout_s is None:
            self.quiet_s = 2 * self.board.timeout_s

    # ---- frames ---------------------------------------------------------------------------------
    def _line_s(self, nbytes: int) -> float:
        return nbytes * 10 / self.transport.baud

    def transact(self, command: int, address: int = 0, count: int = 0, payload: bytes = b"") -> bytes:
        frame = P.request(command, address, count, payload)
        unit = P.payload_unit(command, self.bus_bytes, answer=True)
        expected = P.ANSWER_HEADER + unit * (P.STATUS_WORDS if command == P.STATUS else count) + P.CRC_BYTES
        timeout = self.transport.latency_s + 2 * self._line_s(len(frame) + expected) + 1e-3
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                self.resync()
            self.transport.write(frame)
            self.frames += 1
            self.bytes_sent += len(frame)
            try:
                return self._answer(command, timeout)
            except LinkError as exc:
                if exc.status not in (None, P.ERR_CRC, P.ERR_TIMEOUT):
                    raise
                last = exc
        raise LinkError(f"{P.COMMANDS.get(command, hex(command))}: no good answer after {self.retries + 1} tries: {last}",
                        last.status if last else None)

    def _read(self, n: int, timeout: float) -> bytes:
        data = self.transport.read(n, timeout)
        self.bytes_received += len(data)
        if len(data) < n:
            raise LinkError(f"answer timed out ({len(data)} of {n} bytes in {timeout:.3g} s)")
        return data

    def _answer(self, command: int, timeout: float) -> bytes:
        skipped = 0
        while True:
            first = self._read(1, timeout)
            if first[0] == P.SOF_ANSWER:
                break
            skipped += 1
            if skipped > 4096:
                raise LinkError("no answer frame start in 4096 bytes")
        head = self._read(P.ANSWER_HEADER - 1, timeout)
        echo, status, count = struct.unpack("<BBH", head)
        unit = P.payload_unit(echo, self.bus_bytes, answer=True) if status == P.OK else 0
        rest = self._read(unit * count + P.CRC_BYTES, timeout + self._line_s(unit * count))
        if P.crc16(head + rest) != 0:
            raise LinkError("answer with a bad CRC", P.ERR_CRC)
        if status != P.OK:
            raise LinkError(f"board answered {P.COMMANDS.get(command, hex(command))} with error {status} "
                            f"({P.STATUS_NAMES.get(status, 'unknown')})", status)
        if echo != command:
            raise LinkError(f"answer to command {echo:#x}, expected {command:#x}", P.ERR_CRC)
        return rest[:-P.CRC_BYTES]

    def resync(self) -> None:
        """Waits until the line has been quiet for ``quiet_s`` (the board has answered or timed out
        whatever it was receiving), discarding what arrives."""
        while self.transport.read(4096, self.quiet_s):
            pass

    # ---- commands -------------------------------------------------------------------------------
    def status(self) -> BoardStatus:
        return BoardStatus.parse(self.transact(P.STATUS))

    def read_regs(self, address: int, count: int = 1) -> list[int]:
        payload = self.transact(P.READ_REGS, address, count)
        return list(struct.unpack(f"<{count}I", payload))

    def write_regs(self, address: int, values) -> None:
        values = [int(v) & 0xFFFF_FFFF for v in values]
        step = self.board.stage_bytes // 4
        for i in range(0, len(values), step):
            chunk = values[i:i + step]
            self.transact(P.WRITE_REGS, address + i, len(chunk), struct.pack(f"<{len(chunk)}I", *chunk))

    def write_words(self, address: int, words: np.ndarray) -> None:
        words = np.ascontiguousarray(words, np.uint8).reshape(-1, self.bus_bytes)
        step = self.board.stage_bytes // self.bus_bytes
        for i in range(0, len(words), step):
            chunk = words[i:i + step]
            self.transact(P.WRITE_MEM, address + i, len(chunk), chunk.tobytes())

    def read_words(self, address: int, count: int, step: int = 64) -> np.ndarray:
        out = np.zeros((count, self.bus_bytes), np.uint8)
        for i in range(0, count, step):
            n = min(step, count - i)
            out[i:i + n] = np.frombuffer(self.transact(P.READ_MEM, address + i, n), np.uint8).reshape(n, self.bus_bytes)
        return out

    def start(self) -> None:
        self.transact(P.START)

    def program(self, streams) -> None:
        for unit in UNITS:
            pairs = regs.program_writes(unit, getattr(streams, unit))
            if pairs:
                self.write_regs(pairs[0][0], [data for _, data in pairs])

    def wait_done(self, timeout_s: float, poll_s: float = 0.0) -> None:
        """Polls the core's STATUS register until done (``poll_s`` between polls)."""
        deadline = self.transport.now() + timeout_s
        while not self.read_regs(regs.STATUS)[0] & regs.STATUS_DONE:
            if self.transport.now() > deadline:
                raise LinkError(f"the core did not finish within {timeout_s:.3g} s")
            if poll_s:
                self.transport.sleep(poll_s)

    def counters(self) -> tuple[int, dict[str, int]]:
        values = self.read_regs(regs.CYCLES_LO, 5)
        return values[0] | values[1] << 32, dict(zip(UNITS, values[2:]))


class BoardMemory:
    """The host's shadow of the board's external memory (see the module docstring)."""

    def __init__(self, link: BoardLink, words: int, assume_zeroed: bool = False):
        self.link, self.words = link, words
        self.data = np.zeros((words, link.bus_bytes), np.uint8)
        self.known = np.full(words, assume_zeroed)
        self.words_sent = 0

    def load(self, image_words: np.ndarray, start: int = 0) -> int:
        """Makes words ``start ..`` equal ``image_words``; sends only what differs; returns words sent."""
        n = len(image_words)
        if start + n > self.words:
            raise LinkError(f"an image of {start + n} words exceeds the board's {self.words}-word memory", P.ERR_RANGE)
        stale = ~self.known[start:start + n] | (self.data[start:start + n] != image_words).any(axis=1)
        sent = 0
        for lo, hi in _runs(stale):
            self.link.write_words(start + lo, image_words[lo:hi])
            sent += hi - lo
        self.data[start:start + n] = image_words
        self.known[start:start + n] = True
        self.words_sent += sent
        return sent

    def forget(self, ranges) -> None:
        for first, count in ranges:
            self.known[first:first + count] = False

    def read(self, first: int, count: int) -> np.ndarray:
        words = self.link.read_words(first, count)
        self.data[first:first + count] = words
        self.known[first:first + count] = True
        return words


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def stored_ranges(streams) -> list[tuple[int, int]]:
    """Word ranges of external memory the STORE instructions of ``streams`` write."""
    out = []
    for ins in streams.decoded("store"):
        if getattr(ins, "rows", 0):
            out += [(ins.ext_addr + r * ins.ext_stride, ins.row_words) for r in range(ins.rows)]
    return out


class BoardRunner:
    """Runs of the core on the board, with the contract of ``sim.core_runner.CoreSimulator.run_batch``."""

    def __init__(self, link: BoardLink, config, assume_zeroed: bool = False):
        self.link, self.config = link, config
        if link.bus_bytes != config.bus_bytes:
            raise LinkError(f"the link was opened for {link.bus_bytes}-byte words, the core has {config.bus_bytes}")
        info, lo, hi = link.read_regs(regs.INFO, 3)
        digest = f"{hi << 32 | lo:016x}"
        if digest != config.digest or info != regs.info_word(config):
            raise LinkError(f"the board's core is {digest} (INFO {info:#x}), not the requested core {config.digest}")
        self.memory = BoardMemory(link, link.board.mem_words, assume_zeroed)

    def execute(self, streams, timeout_cycles: int = 100_000_000) -> tuple[int, dict[str, int]]:
        """One run of the core on what memory holds: program, start, wait, counters."""
        streams.check(self.config)
        self.link.program(streams)
        self.link.start()
        clock = self.link.board.clock_hz or 1
        self.link.wait_done(timeout_cycles / clock + 1.0 + self.link.transport.latency_s)
        self.memory.forget(stored_ranges(streams))
        return self.link.counters()

    def run_batch(self, runs, name: str = "board") -> list:
        from sim.core_runner import CoreResult

        results = []
        for i, run in enumerate(runs):
            if run.memory is not None:
                self.memory.load(np.asarray(run.memory, np.uint8).reshape(-1, self.config.bus_bytes))
            elif i == 0 and not self.memory.known.any():
                raise ValueError("the first run of a batch needs a memory image")
            cycles, counts = self.execute(run.streams, run.timeout_cycles)
            blocks = [self.memory.read(first, count) for first, count in run.read]
            words = np.concatenate(blocks) if blocks else np.zeros((0, self.config.bus_bytes), np.uint8)
            results.append(CoreResult(words, cycles, counts))
        return results

"""The board as a backend of the runtime (``hw.runtime.backend.Backend``): what ``samhw infer --backend
board --port /dev/ttyUSB0`` plugs in. Every invocation runs on the board through the host driver
(``hw.board.host``): the external memory is made equal to a fresh ``program.memory()`` with the
invocation's inputs written (only the words the board does not already hold cross the link: the static
image once, then each invocation's inputs and the words earlier runs changed), every run of the core is
programmed, started and waited for, and the output regions are read back.

    link = BoardLink(SerialTransport("/dev/ttyUSB0"), config.bus_bytes)
    with BoardBackend(link, config) as backend:
        backend.open(program)
        outcome = backend.run(inv, {"input": codes})

A program must fit the board's external memory (``BoardStatus.mem_words``); a bigger one is refused in
``open`` with the sizes.
"""

from __future__ import annotations

import time

import numpy as np

from hw.runtime.backend import Backend, Outcome

from .host import BoardLink, BoardRunner, LinkError


class BoardBackend(Backend):
    name = "board"

    def __init__(self, link: BoardLink, config, assume_zeroed: bool = False):
        self.link, self.config = link, config
        self.runner = BoardRunner(link, config, assume_zeroed)
        self.program = None

    def open(self, program) -> None:
        if program.config.digest != self.config.digest:
            raise LinkError(f"the program targets core {program.config.digest}, the board runs {self.config.digest}")
        if program.total_words > self.runner.memory.words:
            raise LinkError(f"the program needs {program.total_words} external memory words, the board has "
                            f"{self.runner.memory.words}: compile fewer invocations per program")
        self.program = program
        self.runner.memory.load(program.memory().reshape(-1, self.config.bus_bytes))

    def run(self, inv, inputs: dict[str, np.ndarray]) -> Outcome:
        start = time.perf_counter()
        memory = self.program.memory()
        inv.write_inputs(memory, self.config.bus_bits, **inputs)
        self.runner.memory.load(memory.reshape(-1, self.config.bus_bytes))
        cycles = [self.runner.execute(streams)[0] for streams in inv.parts]
        view = memory.reshape(-1, self.config.bus_bytes)
        for region in inv.outputs.values():
            view[region.base:region.base + region.words] = self.runner.memory.read(region.base, region.words)
        return Outcome(inv.read_outputs(memory, self.config.bus_bits), sum(cycles), cycles, time.perf_counter() - start)

    def describe(self) -> str:
        b = self.link.board
        return f"board ({b.clock_hz / 1e6:g} MHz core clock, {self.link.transport.baud:g} baud, {b.mem_words} memory words)"

    def close(self) -> None:
        self.link.transport.close()

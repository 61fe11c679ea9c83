"""Backends: where a compiled invocation runs. One interface, so the runtime (``hw/runtime/model.py``)
does not care whether the core is a model, its RTL or a board.

    backend.open(program)                      # once: the program's static image goes into memory
    outcome = backend.run(inv, {"input": codes})   # one invocation: inputs in, every run of the core, outputs out
    backend.close()

``run`` leaves external memory as a fresh ``program.memory()`` with the inputs written would be before
the core starts (the static image, a zeroed tensor area, the input regions), so an invocation computes
the same whatever ran before it; it returns the output tensors and the cycles the core spent.

``FsimBackend`` runs the functional model (``hw.fsim``) and takes the cycles from the cycle model
(``hw.core.timing``, equal to the RTL's cycle counter). Two things it computes once per invocation and
reuses, because neither depends on the input codes: the hazard check (which words each unit touches and
the token order between them are fixed by the streams) and the cycle count (the cycle model reads from
memory only what LOADs put into PARAM, i.e. the program's static descriptors and constant slots).
``check_hazards="always"`` and ``cycles="always"`` recompute them on every run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from hw.core.timing import run_timing
from hw.fsim import run as fsim_run


@dataclass
class Outcome:
    """What one invocation run gave: its output tensors and the core's cycles (summed over its runs)."""

    outputs: dict[str, np.ndarray]
    cycles: int
    part_cycles: list[int] = field(default_factory=list)
    seconds: float = 0.0              # wall time of the backend's work
    # backends that also check themselves (verilator: every output word against the functional model,
    # the RTL's cycle counter against the cycle model) fill these; None where not compared
    words: int | None = None
    word_mismatches: int | None = None
    model_cycles: int | None = None


class Backend:
    """The interface every backend implements (see the module docstring)."""

    name = "backend"

    def open(self, program) -> None:
        raise NotImplementedError

    def run(self, inv, inputs: dict[str, np.ndarray]) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return self.name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FsimBackend(Backend):
    """The functional model and the cycle model (see the module docstring)."""

    name = "fsim"

    def __init__(self, check_hazards: str = "first", cycles: str = "first"):
        if check_hazards not in ("first", "always", "never") or cycles not in ("first", "always"):
            raise ValueError("check_hazards is first|always|never, cycles first|always")
        self.check_hazards, self.cycles_policy = check_hazards, cycles
        self.program = None
        self._checked: set[str] = set()
        self._cycles: dict[str, list[int]] = {}

    def open(self, program) -> None:
        self.program = program
        self.config = program.config
        self.memory = program.memory()
        self.area = program.static_words * self.config.bus_bytes

    def prepare(self, inv, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """External memory as the invocation starts: static image, zeroed tensor area, its inputs."""
        memory = self.memory
        memory[self.area:] = 0
        inv.write_inputs(memory, self.config.bus_bits, **inputs)
        return memory

    def execute(self, inv, memory: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Every run of ``inv`` on ``memory`` (changed in place); the cycle model's count of each run."""
        key = inv.key
        hazards = self.check_hazards == "always" or (self.check_hazards == "first" and key not in self._checked)
        timed = self.cycles_policy == "always" or key not in self._cycles
        cycles = []
        for streams in inv.parts:
            if timed:
                cycles.append(run_timing(self.config, streams, memory).cycles)
            memory = fsim_run(self.config, streams, memory, check_hazards=hazards)
        self._checked.add(key)
        if timed:
            self._cycles[key] = cycles
        self.memory = memory
        return memory, list(self._cycles[key])

    def run(self, inv, inputs: dict[str, np.ndarray]) -> Outcome:
        start = time.perf_counter()
        memory, cycles = self.execute(inv, self.prepare(inv, inputs))
        outputs = inv.read_outputs(memory, self.config.bus_bits)
        return Outcome(outputs, sum(cycles), cycles, time.perf_counter() - start)

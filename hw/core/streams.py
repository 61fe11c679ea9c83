"""The three instruction streams of one core run, and the external memory they run against.

``Streams`` is what the compiler emits for one run of the core and what every backend executes: the
functional model (``hw/fsim``), the RTL in simulation and the board. External memory is a flat uint8
array; word ``w`` is bytes ``[w * bus_bytes, (w + 1) * bus_bytes)``, little-endian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import CoreConfig
from .isa import Gemm, Instruction, IsaError, Opcode, Transfer, decode_instruction

UNITS = ("load", "compute", "store")
_UNIT_OPS = {"load": {Opcode.LOAD, Opcode.SYNC, Opcode.END}, "compute": {Opcode.GEMM, Opcode.SYNC, Opcode.END},
             "store": {Opcode.STORE, Opcode.SYNC, Opcode.END}}


@dataclass(frozen=True)
class Streams:
    """Encoded 128-bit instructions of the LOAD, COMPUTE and STORE units, each ending with END."""

    load: tuple[int, ...]
    compute: tuple[int, ...]
    store: tuple[int, ...]

    @classmethod
    def assemble(cls, load: list, compute: list, store: list) -> "Streams":
        """From instruction records; appends the END each stream needs."""
        end = Instruction(Opcode.END).encode()
        return cls(*(tuple(i.encode() for i in stream) + (end,) for stream in (load, compute, store)))

    def decoded(self, unit: str) -> list[Instruction | Transfer | Gemm]:
        return [decode_instruction(w) for w in getattr(self, unit)]

    def check(self, config: CoreConfig) -> None:
        """Each stream fits the unit's instruction RAM, holds only its unit's opcodes, ends with END."""
        for unit in UNITS:
            words = getattr(self, unit)
            if len(words) > config.prog_words:
                raise IsaError(f"{unit} stream has {len(words)} instructions, the core holds {config.prog_words}")
            ops = [decode_instruction(w).opcode for w in words]
            if not ops or ops[-1] != Opcode.END:
                raise IsaError(f"{unit} stream does not end with END")
            allowed = _UNIT_OPS[unit] | ({Opcode.SOFTMAX} if unit == "compute" and config.softmax_lanes else set())
            wrong = [Opcode(op).name for op in ops if op not in allowed]
            if wrong:
                raise IsaError(f"{unit} stream holds {wrong[0]}, which the {unit} unit does not execute")

    def __len__(self) -> int:
        return sum(len(getattr(self, u)) for u in UNITS)


def new_memory(config: CoreConfig, words: int) -> np.ndarray:
    return np.zeros(words * config.bus_bytes, np.uint8)


def word_view(memory: np.ndarray, config: CoreConfig) -> np.ndarray:
    """[words, bus_bytes] view of a flat external memory."""
    return memory.reshape(-1, config.bus_bytes)

"""Happens-before checking of buffer and memory accesses between the three units.

The functional model executes instructions one at a time, but the hardware overlaps them: a LOAD fills
one half of a buffer while a GEMM reads the other. A program is only correct if every pair of
conflicting accesses by different units (a write and any other access to the same word) is ordered by
token flags; then every order the tokens allow gives the same result, the RTL's included. This module
proves that per word with vector clocks, so a compiler bug in the flags fails in the functional model,
not as a timing-dependent mismatch in co-simulation.

Ordering: each unit's instructions are ordered among themselves; a token counter has one producer and
one consumer unit, so the k-th wait on a counter happens after the k-th signal (a FIFO of clocks).
"""

from __future__ import annotations

from collections import deque

import numpy as np

UNIT_NAMES = ("load", "compute", "store")


class HazardError(ValueError):
    """Two units access one word without a token ordering them, or a unit reads a word never written."""


class Clocks:
    """The vector clock of each unit's current instruction and the clocks travelling with tokens."""

    def __init__(self):
        self.current = [np.zeros(3, np.int64) for _ in UNIT_NAMES]
        self.executed = [0, 0, 0]
        self.tokens: dict[str, deque] = {}

    def start(self, unit: int, taken: list[str]) -> np.ndarray:
        """Clock of unit ``unit``'s next instruction, which takes one token from each of ``taken``."""
        clock = self.current[unit].copy()
        for counter in taken:
            clock = np.maximum(clock, self.tokens[counter].popleft())
        self.executed[unit] += 1
        clock[unit] = self.executed[unit]
        self.current[unit] = clock
        return clock

    def signal(self, unit: int, counter: str) -> None:
        self.tokens.setdefault(counter, deque()).append(self.current[unit].copy())

    def count(self, counter: str) -> int:
        return len(self.tokens.get(counter, ()))


class AccessLog:
    """Last writer and last reader per unit of every word of one storage (a buffer or the memory)."""

    def __init__(self, name: str, words: int, require_written: bool):
        self.name = name
        self.require_written = require_written
        self.writer = np.full(words, -1, np.int8)
        self.write_seq = np.zeros(words, np.int64)
        self.read_seq = np.zeros((3, words), np.int64)

    def _race(self, word: int, unit: int, clock: np.ndarray, what: str, other: int, other_seq: int,
              other_what: str) -> HazardError:
        return HazardError(f"race on {self.name} word {word}: {UNIT_NAMES[unit]} instruction {clock[unit] - 1} {what} "
                           f"it while {UNIT_NAMES[other]} instruction {other_seq - 1} {other_what} it, with no token "
                           f"between them")

    def _ordered_after_writes(self, words: np.ndarray, unit: int, clock: np.ndarray, what: str) -> None:
        writer = self.writer[words]
        foreign = (writer >= 0) & (writer != unit)
        late = foreign & (clock[np.maximum(writer, 0)] < self.write_seq[words])
        if late.any():
            i = int(np.argmax(late))
            raise self._race(int(words[i]), unit, clock, what, int(writer[i]), int(self.write_seq[words[i]]), "writes")

    def read(self, words: np.ndarray, unit: int, clock: np.ndarray) -> None:
        words = np.unique(np.asarray(words, np.int64))
        if self.require_written:
            unwritten = self.writer[words] < 0
            if unwritten.any():
                raise HazardError(f"{UNIT_NAMES[unit]} instruction {clock[unit] - 1} reads {self.name} word "
                                  f"{int(words[np.argmax(unwritten)])}, which nothing has written")
        self._ordered_after_writes(words, unit, clock, "reads")
        self.read_seq[unit, words] = clock[unit]

    def write(self, words: np.ndarray, unit: int, clock: np.ndarray) -> None:
        words = np.unique(np.asarray(words, np.int64))
        self._ordered_after_writes(words, unit, clock, "writes")
        for other in range(3):
            if other == unit:
                continue
            late = self.read_seq[other, words] > clock[other]
            if late.any():
                i = int(np.argmax(late))
                raise self._race(int(words[i]), unit, clock, "writes", other, int(self.read_seq[other, words[i]]),
                                 "reads")
        self.writer[words] = unit
        self.write_seq[words] = clock[unit]

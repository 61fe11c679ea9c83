"""What every unit shares: its instruction and token ports, and the token test of an instruction.

A unit starts (takes) an instruction in a cycle where the fetch stage holds it, the unit is free,
and every counter its ``wait_*`` flags name is non-zero; ``take_*`` then consumes those tokens. The
core connects ``*_ok`` / ``take_*`` / ``signal_*`` to the counters of ``tokens.COUNTERS`` (a flag with
no counter for that unit is always satisfied and its pulses go nowhere).
"""

from __future__ import annotations

from amaranth.lib.wiring import In, Out

from .config import PROG_WORD_BITS
from .isa import Instruction
from .layouts import view


def unit_members() -> dict:
    return {
        "run_start": In(1),
        "inst": In(PROG_WORD_BITS), "inst_valid": In(1), "take": Out(1),
        "wait_prev_ok": In(1), "wait_next_ok": In(1),
        "take_prev": Out(1), "take_next": Out(1),        # consume the waited-for tokens
        "signal_prev": Out(1), "signal_next": Out(1),    # one token each, in the cycle the instruction finishes
        "ending": Out(1),                                # END executes in this cycle
        "ended": Out(1),                                 # END has executed in this run
    }


def header(unit):
    return view(Instruction, unit.inst)


def tokens_ready(unit):
    h = header(unit)
    return (~h.wait_prev | unit.wait_prev_ok) & (~h.wait_next | unit.wait_next_ok)


def take_tokens(m, unit):
    """Consume the waited-for tokens in a cycle where ``unit.take`` is high."""
    h = header(unit)
    m.d.comb += [unit.take_prev.eq(unit.take & h.wait_prev), unit.take_next.eq(unit.take & h.wait_next)]


def track_end(m, unit, is_end):
    """``ending``/``ended`` for a unit whose END is taken when ``unit.take & is_end``."""
    m.d.comb += unit.ending.eq(unit.take & is_end)
    with m.If(unit.run_start):
        m.d.sync += unit.ended.eq(0)
    with m.Elif(unit.ending):
        m.d.sync += unit.ended.eq(1)

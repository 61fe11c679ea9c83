"""Amaranth views of the binary records of ``isa.py``, built from the same field tables, so the RTL
never restates a bit position."""

from __future__ import annotations

from functools import cache

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from . import isa


@cache
def layout_of(record: type) -> data.StructLayout:
    """Fields of an ``isa`` record at their bit positions, padded to the record's width."""
    members, lo = {}, 0
    for f in record.LAYOUT:
        assert f.lo == lo, (record.__name__, f.name)
        members[f.name] = signed(f.width) if f.signed else unsigned(f.width)
        lo += f.width
    if lo < record.BITS:
        members["_pad"] = unsigned(record.BITS - lo)
    return data.StructLayout(members)


def view(record: type, value) -> data.View:
    return data.View(layout_of(record), value[:record.BITS])


def field_width(record: type, name: str) -> int:
    return next(f.width for f in record.LAYOUT if f.name == name)

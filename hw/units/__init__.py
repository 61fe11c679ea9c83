"""Arithmetic units of the accelerator, each bit-exact with its sw.ref counterpart (see each module)."""

from .agq_av import AgqValueUnit
from .combine import GroupAccumulator
from .grouped_mac import GroupedMacLane
from .hluq_pe import HluqPE
from .requant import Requantizer

__all__ = ["AgqValueUnit", "GroupAccumulator", "GroupedMacLane", "HluqPE", "Requantizer"]

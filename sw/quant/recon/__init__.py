"""Block reconstruction (AdaRound, BRECQ, QDrop; methods.md §1.5) and SAQ-SAM's PAR (§4.3, par.py) after
statistic calibration."""

from .reconstruct import reconstruct

__all__ = ["reconstruct"]

"""Block reconstruction (AdaRound, BRECQ, QDrop; methods.md §1.5) after statistic calibration."""

from .reconstruct import reconstruct

__all__ = ["reconstruct"]

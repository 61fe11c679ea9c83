"""GEMM engine: the hw.units PEs in an R x K array with operand memories, tiling and requantization."""

from .config import EngineConfig
from .engine import GemmEngine

__all__ = ["EngineConfig", "GemmEngine"]

"""Runtime of the programmable core, numpy only: a compiled program (``hw/compiler``) runs the whole
model, every quantized layer on a backend and every host step in ``sw/ref`` (``model.py``).

Backends (``backend.py``): ``FsimBackend`` (the functional model and the cycle model, here), the core's
RTL on Verilator (``sim.core_backend.VerilatorBackend``, a persistent simulator process), and later a
board behind a serial link; all implement ``Backend``. ``report.py`` writes the per-layer table.
"""

from .backend import Backend, FsimBackend, Outcome
from .model import (DEFAULT_BOX_BATCH, Accelerator, LayerRecord, ModelRun, ProgramMismatch, backend_runs,
                    reference_model, run_model)
from .report import DEFAULT_CLOCK_MHZ, latency_ms, layer_table, run_record, verdict

__all__ = ["Accelerator", "Backend", "DEFAULT_BOX_BATCH", "DEFAULT_CLOCK_MHZ", "FsimBackend", "LayerRecord",
           "ModelRun", "Outcome", "ProgramMismatch", "backend_runs", "latency_ms", "layer_table", "reference_model",
           "run_model", "run_record", "verdict"]

"""Speed and energy of the programmable core from its cycle counts, against an FP32 array of the same
architecture on the same FPGA, the INT8 core and the CPU (``samhw estimate``; docs/estimate.md).

numpy only, torch and Verilator stay out (``cpu.py`` is the CPU baseline and the one module that imports
torch; the activity measurements are ``sim/core_activity.py`` and ``sim/fp32_activity.py``; both run
only in the ``--measure`` step, whose files the estimate reads). One module per job:

    workload.py   every layer invocation of one image and one box, with repeat counts
    sam_vit.py    the SAM ViT-B encoder's invocations from its shapes (no bundle)
    costs.py      one invocation on a core: MACs, cycles (hw.core.timing), bytes, energy events
    fp32.py       the FP32 array mapped onto the same compiler and cycle model
    analyze.py    a workload on a core, with a content-keyed cache
    designs.py    the compared designs: configuration, clock, resources by block, activity
    resources.py  synthesis summaries (never typed), boards.py: memory roof and clock source
    activity.py   measured toggle rates; energy.py: activity x coefficients + static x time
    sources.py    every outside constant with its source; perf.py: time and roof per invocation
    estimate.py   the run; summary.py: ratios, moonshot; report.py, plots.py: docs/estimate.md
    crosscheck.py cycle counts against the co-simulation reports; measure.py, host.py, cpu.py: --measure
"""

from .estimate import EstimateOptions, run_estimate
from .report import write_report

__all__ = ["EstimateOptions", "run_estimate", "write_report"]

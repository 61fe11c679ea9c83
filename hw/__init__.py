"""Amaranth accelerator generator (numpy + Amaranth only; never imports torch).

Reads the integer export bundle produced by ``sw`` and emits Verilog for the grouped-scale MAC
arrays, HLUQ/AGQ units and requantizers. So far: the arithmetic units (``hw.units``), their register
widths (``hw.widths``) and Verilog emission (``hw.generate``); the GEMM engine comes later.
"""

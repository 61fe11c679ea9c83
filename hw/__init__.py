"""Amaranth accelerator generator (numpy + Amaranth only; never imports torch).

Reads the integer export bundle produced by ``sw`` and emits Verilog for the grouped-scale MAC
arrays, HLUQ/AGQ units and requantizers. Populated by the hardware issues; nothing here yet.
"""

"""Amaranth accelerator generator (numpy + Amaranth only; never imports torch).

One programmable core runs every quantized layer of the integer export bundle produced by ``sw``:
its RTL and configuration (``hw.core``, docs/core.md), the compiler from bundle invocations to its
programs (``hw.compiler``) and the functional model that runs them (``hw.fsim``), docs/compiler.md;
the arithmetic building blocks it shares with the FP32 baseline lanes (``hw.units``, ``hw.fp32``);
Verilog + core.json emission (``hw.generate``, ``samhw generate``).
"""

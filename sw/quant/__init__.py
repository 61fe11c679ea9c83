"""Fake-quantization framework (torch): quantizers, observers, quantized modules, calibration."""

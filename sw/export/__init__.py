"""Export: a calibrated fake-quant model -> the integer bundle that ``sw.ref``, ``hw`` and ``sim`` read."""

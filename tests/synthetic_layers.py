"""Synthetic bundle records (no torch) for the hardware and contract tests: random but valid layers,
and ``with_field`` to change one nested field of a frozen record (which re-runs its checks).

The generators live in ``sim/random_layers.py`` (one copy, shared with the randomized co-simulation);
this module names the ones the tests use."""

from __future__ import annotations

from sim.random_layers import (CODES_OUT, EXTREMES, FIT_SHIFT_LATER, HOST_OUT, agq_lut, attention_layer,  # noqa: F401
                               conv_layer, fit_shift, input_codes, linear_layer, output_record, random_codes,
                               softmax_layer, with_field, with_fitted_shift)

"""Shared check for calibrated quantized models: same seed gives the same state file, and a saved
state reloads into a model that saves the same bytes and predicts the same masks."""

from __future__ import annotations

from sw.quant.state import load_quant_state, save_quant_state


def assert_deterministic_round_trip(qmodel, again, float_model, item, tmp_path) -> None:
    """``qmodel`` and ``again``: two calibrations of ``float_model`` with the same config and seed."""
    first, second, third = (tmp_path / f"{n}.safetensors" for n in "abc")
    save_quant_state(qmodel, first)
    save_quant_state(again, second)
    assert first.read_bytes() == second.read_bytes()
    restored = load_quant_state(float_model, first)
    save_quant_state(restored, third)
    assert third.read_bytes() == first.read_bytes()
    a = qmodel.predict(item.image, item.boxes)
    b = restored.predict(item.image, item.boxes)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()

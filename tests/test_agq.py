"""AGQ post-softmax quantizer: code/value formulas, the underflow rule, and tau selection by A.V error."""

from __future__ import annotations

import math

import pytest
import torch

from sw.quant.agq import AGQQuantizer, agq_codes, agq_fake_quantize, agq_values


@pytest.mark.parametrize("bits", [4, 6, 8])
@pytest.mark.parametrize("tau", [1, 2, 4])
def test_every_level_round_trips(bits, tau):
    s = 0.7
    codes = torch.arange(2**bits - 1, dtype=torch.float32)  # every non-zero level...
    # ...that float32 can hold: at 8 bits and tau = 1 the deepest levels (2^-253) lie below it, and
    # inputs are floored at 1e-30 before the log.
    codes = codes[s * 2.0 ** (-codes / tau) >= 1e-30]
    values = agq_values(codes, s, tau, bits)
    assert torch.allclose(values, s * 2.0 ** (-codes / tau))
    assert torch.equal(agq_codes(values, s, tau, bits), codes)
    assert torch.all(values[1:] < values[:-1])  # monotone: larger code, smaller value


def test_formula_on_hand_values():
    # a = s * 2^(-1.3) with tau = 2: -tau*log2(a/s) = 2.6 -> code 3 -> s * 2^(-1.5)
    s = 0.5
    a = torch.tensor([s * 2 ** -1.3])
    assert agq_codes(a, s, 2, 4).item() == 3
    assert agq_fake_quantize(a, s, 2, 4).item() == pytest.approx(s * 2 ** -1.5)
    # above s: code 0, value s (overflow clamps)
    assert agq_fake_quantize(torch.tensor([0.9]), s, 2, 4).item() == pytest.approx(s)


@pytest.mark.parametrize("tau", [1, 2, 4])
def test_underflow_rule(tau):
    bits, s = 4, 1.0
    zero_code = 2**bits - 1
    smallest = s * 2 ** (-(zero_code - 1) / tau)
    # boundary: unclamped code 2^k - 2 stays a level, 2^k - 1 becomes zero
    keep = torch.tensor([s * 2 ** (-(zero_code - 1.4) / tau)])
    drop = torch.tensor([s * 2 ** (-(zero_code - 0.4) / tau)])
    assert agq_fake_quantize(keep, s, tau, bits).item() == pytest.approx(smallest)
    assert agq_fake_quantize(drop, s, tau, bits).item() == 0.0
    assert agq_codes(torch.tensor([0.0]), s, tau, bits).item() == zero_code
    assert agq_fake_quantize(torch.tensor([0.0, 1e-30]), s, tau, bits).tolist() == [0.0, 0.0]
    assert agq_codes(drop, s, tau, bits).max() <= zero_code  # always fits in k bits


def test_chosen_tau_minimizes_output_error():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 16, 64, generator=g) * 3
    a = logits.softmax(-1)
    v = torch.randn(2, 4, 64, 8, generator=g)
    q = AGQQuantizer(4)
    q.observing = True
    q(a, value=v)
    q(a.flip(2), value=v)
    q.observing = False
    q.finalize()
    tau = int(q.tau)
    assert q.loss_sum[tau] == min(q.loss_sum.values())
    # the finalized quantizer's output error at its (tau, s) is no worse than any other tau at its own best s
    q.enabled = True
    err = ((q(a) - a) @ v).pow(2).mean().item()
    for other in q.taus:
        s_other = q.scale_sum[other] / q.calls
        err_other = ((agq_fake_quantize(a, s_other, other, 4) - a) @ v).pow(2).mean().item()
        assert err <= err_other * 1.05 or other == tau
    assert 0 < float(q.scale) <= a.max().item() + 1e-6 and not math.isnan(float(q.scale))


def test_needs_value_while_observing():
    q = AGQQuantizer(4)
    q.observing = True
    with pytest.raises(RuntimeError, match="value tensor"):
        q(torch.rand(3, 3))


def test_tau_minimizes_output_error_on_a_real_calibration_batch(litemedsam, calib_items):
    """Decoder token-to-image attention of LiteMedSAM on real COCO images (one prompt each, so every
    probability is scored): the tau kept is the one whose summed A.V error, recomputed here over the
    same (tau, s) candidates, is smallest."""
    from dataclasses import replace

    from sw.quant.agq import AGQ_SAMPLES
    from sw.quant.config import make_config
    from sw.quant.forward import run_items
    from sw.quant.prepare import quantize_model

    qmodel = quantize_model(litemedsam, make_config("ptq4sam-s", "w4a4"))
    q = qmodel.get_submodule("mask_decoder.transformer.layers.0.cross_attn_token_to_image.softmax_quantizer")
    calls = []
    handle = q.register_forward_hook(lambda m, args, kwargs, out: calls.append((args[0], kwargs["value"])),
                                     with_kwargs=True)
    q.observing = True
    try:
        run_items(qmodel, [replace(item, boxes=item.boxes[:1]) for item in calib_items[:3]], "agq", progress=False)
    finally:
        handle.remove()
        q.observing = False
    q.finalize()
    assert len(calls) == 3 and all(a.numel() <= AGQ_SAMPLES for a, _ in calls)
    totals = {}
    for tau in q.taus:
        totals[tau] = sum(min(((agq_fake_quantize(a, s.item(), tau, 4) - a) @ v).pow(2).mean().item()
                              for s in q.candidate_scales(a.max().item())) for a, v in calls)
    chosen = int(q.tau)
    assert totals[chosen] == min(totals.values())
    assert totals[chosen] == pytest.approx(q.loss_sum[chosen], rel=1e-4)

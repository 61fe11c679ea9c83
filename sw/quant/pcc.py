"""PCC: SAQ-SAM's perceptual-consistency clipping of the decoder's q/k activations (methods.md §4.2).

The decoder's q/k projection inputs and outputs carry rare outliers two orders of magnitude above the
bulk, and clipping them hard barely changes *where* each query attends, while MSE-style range searches
never clip that hard. PCC therefore picks each clipping range by how well the quantized attention keeps
the float attention's focus: the focus mask of a map keeps the entries above ``threshold`` times their
row maximum, and the loss is 1 - IoU of the two masks per (prompt, head), averaged.

Search, on the first calibration image with prompts (quantizers off except the ones searched): for each
decoder attention in call order, for its q-projection input, k-projection input, q and k in turn, try
the clipping range [quantile(x, 1 - p), quantile(x, p)] for every p of ``GRID`` (x = the quantizer's
whole input tensor), keep the p with the lowest focus loss against the float map (the first one on a
tie, i.e. the tightest clip), and leave the quantizer on with that range, so later quantizers and
modules are searched with it in place. A second pass re-searches every quantizer with all others on
(one round of coordinate descent). v, the out-projection input and the softmax stay with statistic
calibration, which then runs with the clipped q/k in place.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from tqdm import tqdm

from ..data.calibration import CalibItem
from ..errors import SamhwError
from ..models.base import SegmentModel
from .qmodules import QuantDecoderAttention
from .quantizer import UniformQuantizer
from .uniform import qparams_from_range

GRID = (0.85, 0.87, 0.88, 0.89, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.960, 0.965, 0.970, 0.975,
        0.980, 0.983, 0.985, 0.987, 0.989, 0.99, 0.993, 0.995, 0.997, 0.999, 0.9993, 0.9995,
        0.9997, 0.9999, 0.99999)
PASSES = 2
# Searched per attention, in this order, with the side of the map each one changes.
SEARCHED = (("q_proj.input_quantizer", "query"), ("k_proj.input_quantizer", "key"),
            ("q_quantizer", "query"), ("k_quantizer", "key"))
# The projections whose per-tensor input ranges PCC sets: with PCC they keep a uniform quantizer even where
# a recipe groups the other projections' inputs by channel (CAG).
CLIPPED_PROJECTIONS = tuple(name.split(".")[0] for name, _ in SEARCHED if name.endswith(".input_quantizer"))


def focus_masks(a: torch.Tensor, threshold: float) -> torch.Tensor:
    """Entries of ``a`` above ``threshold`` times the maximum of their row (last dimension)."""
    return a > threshold * a.amax(-1, keepdim=True)


def mask_loss(f_hat: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Mean over leading dims of 1 - IoU of boolean masks ``[..., queries, keys]``; two empty masks
    count as identical."""
    inter = (f_hat & f).sum((-2, -1))
    union = (f_hat | f).sum((-2, -1))
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter, dtype=torch.float32))
    return (1 - iou).mean()


def focus_loss(a_hat: torch.Tensor, a: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """1 - IoU of the focus masks of attention maps ``[..., queries, keys]``, averaged over the leading
    dims (prompts, heads). The reference divides by union + 1e-6, which scores identical maps slightly
    above 0; exact 0 (identical) and 1 (disjoint) keep the loss's ends meaningful."""
    if a_hat.shape != a.shape or a.dim() < 2:
        raise ValueError(f"focus_loss needs two maps of one shape [..., queries, keys], got {tuple(a_hat.shape)} "
                         f"and {tuple(a.shape)}")
    return mask_loss(focus_masks(a_hat, threshold), focus_masks(a, threshold))


def quantiles(x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Linearly interpolated quantiles of all of ``x`` (torch.quantile's rule, without its 16M-element
    limit: the k-projection inputs of token-to-image attention hold 1M elements per prompt)."""
    values = x.detach().flatten().float().sort().values
    pos = probs.double() * (values.numel() - 1)
    low = pos.floor().long()
    high = torch.clamp(low + 1, max=values.numel() - 1)
    frac = (pos - low).float()
    return values[low] + frac * (values[high] - values[low])


def set_range(q: UniformQuantizer, lo: torch.Tensor, hi: torch.Tensor) -> None:
    scale, zero_point = qparams_from_range(lo, hi, q.bits)
    q.scale, q.zero_point = scale, zero_point
    q.calibrated.fill_(True)
    q.enabled = True


class _Stop(Exception):
    pass


def _attentions(qmodel: SegmentModel) -> dict[str, QuantDecoderAttention]:
    return {name: m for name, m in qmodel.mask_decoder.named_modules() if isinstance(m, QuantDecoderAttention)}


def _float_maps(qmodel: SegmentModel, run) -> dict[str, torch.Tensor]:
    """Every decoder attention's post-softmax map on one forward, in call order."""
    maps: dict[str, torch.Tensor] = {}
    # (hooks that return something replace the module's inputs, hence dict.update)
    handles = [m.softmax_quantizer.register_forward_pre_hook(lambda _m, args, n=n: maps.update({n: args[0].clone()}))
               for n, m in _attentions(qmodel).items()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return maps


def _inputs(attn: QuantDecoderAttention, run) -> tuple[torch.Tensor, torch.Tensor]:
    """The (q, k) arguments ``attn`` receives on ``run()`` with the quantizers as they are now."""
    captured = {}

    def grab(_module, args, kwargs):
        named = dict(zip(("q", "k", "v"), args)) | kwargs
        captured["qk"] = (named["q"], named["k"])
        raise _Stop

    handle = attn.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        run()
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured["qk"]


def _quantizer_input(q: nn.Module, run) -> torch.Tensor:
    captured = {}
    handle = q.register_forward_pre_hook(lambda _m, args: captured.update(x=args[0]))
    try:
        run()
    finally:
        handle.remove()
    return captured["x"]


def search_quantizer(attn: QuantDecoderAttention, field: str, side: str, q_in: torch.Tensor, k_in: torch.Tensor,
                     reference: torch.Tensor, threshold: float) -> dict:
    """Fix ``attn.<field>`` at the grid clip with the lowest focus loss against the float map ``reference``."""
    q = attn.get_submodule(field)
    project = attn.query if side == "query" else attn.key
    inp = q_in if side == "query" else k_in
    x = _quantizer_input(q, lambda: project(inp))
    if field in ("q_quantizer", "k_quantizer"):
        # After the projection only the quantization moves: reuse the projected tensor.
        moved = lambda: attn.split_heads(q(x))  # noqa: E731
    else:
        moved = lambda: project(inp)  # noqa: E731
    fixed = attn.key(k_in) if side == "query" else attn.query(q_in)
    target = focus_masks(reference, threshold)
    bounds = quantiles(x, torch.tensor([1 - p for p in GRID] + list(GRID))).reshape(2, -1)
    best = None
    for p, lo, hi in zip(GRID, *bounds):
        set_range(q, lo, hi)
        a_hat = attn.probabilities(moved(), fixed) if side == "query" else attn.probabilities(fixed, moved())
        loss = mask_loss(focus_masks(a_hat, threshold), target).item()
        if best is None or loss < best[0]:
            best = (loss, p, lo, hi)
    loss, p, lo, hi = best
    set_range(q, lo, hi)
    return {"percentile": p, "loss": loss}


def search_attention(attn: QuantDecoderAttention, q_in: torch.Tensor, k_in: torch.Tensor, reference: torch.Tensor,
                     threshold: float) -> list[dict]:
    """One PCC pass over ``attn``'s four searched quantizers, in order, on its inputs ``q_in``, ``k_in``."""
    return [{"field": field, **search_quantizer(attn, field, side, q_in, k_in, reference, threshold)}
            for field, side in SEARCHED]


@torch.no_grad()
def apply_pcc(qmodel: SegmentModel, items: list[CalibItem], progress: bool = True) -> list[dict]:
    """Search and fix the clipping of every decoder attention's q/k path (all quantizers must be off).

    Returns one record per search (quantizer name, pass, chosen percentile and its focus loss); the
    quantizers of the last pass are left calibrated and on.
    """
    cfg = qmodel.quant_config
    item = next((it for it in items if len(it.boxes)), None)
    if item is None:
        raise SamhwError("PCC needs a calibration image with at least one box prompt")
    x, meta = qmodel.preprocess(item.image)
    embedding = qmodel.encode(x)  # the encoder stays float throughout the search
    boxes = qmodel.boxes_to_input(item.boxes, meta)
    run = lambda: qmodel.decode(embedding, boxes)  # noqa: E731
    attentions = _attentions(qmodel)
    for name, attn in attentions.items():
        for field, _ in SEARCHED:
            if type(attn.get_submodule(field)) is not UniformQuantizer:
                raise SamhwError(f"PCC needs uniform per-tensor quantizers; {name}.{field} is "
                                 f"{type(attn.get_submodule(field)).__name__}")
    references = _float_maps(qmodel, run)
    log = []
    bar = tqdm(total=PASSES * len(references) * len(SEARCHED), desc="PCC", unit="search", disable=not progress)
    for pass_index in range(PASSES):
        for name in references:  # call order, so each module sees the clipping of those before it
            attn = attentions[name]
            q_in, k_in = _inputs(attn, run)
            for record in search_attention(attn, q_in, k_in, references[name], cfg.pcc_threshold):
                field = record.pop("field")
                log.append({"quantizer": f"mask_decoder.{name}.{field}", "pass": pass_index, **record})
            bar.update(len(SEARCHED))
    bar.close()
    return log

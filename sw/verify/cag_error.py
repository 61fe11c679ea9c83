"""``samhw verify cag-error``: how much each CAG input quantizer clips and how large its error is, on a
calibrated model's own inputs, for several saved states on the same images (docs/cag_error_w4a4.md).

Comparing group counts by end accuracy alone does not say whether fewer groups lose through clipping
(a merged group takes the mean of its channels' scales, so wide channels fall outside it) or through
resolution. This measures both per quantizer, next to a per-tensor min/max quantizer fitted to the same
input (an oracle: it sees the very tensor it quantizes), which is what a single group would be if its
range were the union of its channels' ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import SamhwError
from ..quant.cag import CAGQuantizer
from ..quant.prepare import iter_quantizers
from ..quant.uniform import fake_quantize, qparams_from_range


@dataclass
class CagError:
    """Sums over every element a CAG quantizer saw."""

    name: str
    elements: int = 0
    clipped: int = 0
    sq_error: float = 0.0
    sq_error_minmax: float = 0.0
    sq_signal: float = 0.0

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / max(self.elements, 1)

    @property
    def rel_mse(self) -> float:
        return self.sq_error / max(self.sq_signal, 1e-30)

    @property
    def rel_mse_minmax(self) -> float:
        return self.sq_error_minmax / max(self.sq_signal, 1e-30)


@dataclass
class CagErrorProbe:
    """Forward hooks on every CAG quantizer of ``qmodel``; use as a context manager around forwards."""

    qmodel: torch.nn.Module
    stats: dict[str, CagError] = field(default_factory=dict)

    def __enter__(self) -> "CagErrorProbe":
        self._handles = []
        for name, q in iter_quantizers(self.qmodel):
            if isinstance(q, CAGQuantizer):
                self.stats[name] = CagError(name)
                self._handles.append(q.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _hook(self, name: str):
        def record(q: CAGQuantizer, inputs, output) -> None:
            x = inputs[0].detach().double()
            scale, zero_point = (t.double() for t in q.channel_params())
            top = 2**q.bits - 1
            # A value clips when its unclamped code lies outside [0, top].
            raw = torch.round(x / scale) + zero_point
            s_mm, z_mm = qparams_from_range(x.min().reshape(1), x.max().reshape(1), q.bits)
            minmax = fake_quantize(x, s_mm.double(), z_mm.double(), q.bits)
            entry = self.stats[name]
            entry.elements += x.numel()
            entry.clipped += int(((raw < 0) | (raw > top)).sum())
            entry.sq_error += float((output.detach().double() - x).pow(2).sum())
            entry.sq_error_minmax += float((minmax - x).pow(2).sum())
            entry.sq_signal += float(x.pow(2).sum())
        return record


def short(name: str) -> str:
    return (name.replace(".input_quantizer", "").replace("image_encoder.", "enc.")
            .replace("mask_decoder.transformer.", "dec."))


def _plot(results: dict[str, list[CagError]], path: Path) -> None:
    from ..report.figures import saved_figure

    with saved_figure(path, (11, 4.5), 100) as ax:
        for label, stats in results.items():
            ax.plot([s.rel_mse for s in stats], marker="o", ms=3, label=label)
        first = next(iter(results.values()))
        ax.plot([s.rel_mse_minmax for s in first], color="0.5", ls="--",
                label=f"per-tensor min/max ({next(iter(results))} inputs)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(first)), [short(s.name) for s in first], rotation=90, fontsize=6)
        ax.set_ylabel("relative squared error")
        ax.set_title("CAG input quantizers: error on the model's own inputs", fontsize=10)
        ax.legend(fontsize=8)


def _cells(stats: list[CagError]) -> list[str]:
    """clipped %, rel. error, min/max rel. error of one quantizer (a list of one) or their means."""
    n = len(stats)
    return [f"{100 * sum(s.clipped_fraction for s in stats) / n:.2f}", f"{sum(s.rel_mse for s in stats) / n:.4f}",
            f"{sum(s.rel_mse_minmax for s in stats) / n:.4f}"]


def probe_states(states: list[str], model: str, data: str, images: int) -> tuple[dict[str, list[CagError]], int]:
    """Per state (labelled "<recipe> <BITS>"), the CAG error of every CAG quantizer on the first ``images``
    val images of ``data`` with their ground-truth boxes (at most 16); and how many images that was."""
    from ..data.calibration import items_from_coco
    from ..data.coco import resolve_coco_folder
    from ..models import load_model
    from ..quant.state import load_quant_state

    val = items_from_coco(resolve_coco_folder(data, "val"), images, max_prompts=16)
    results = {}
    for state in states:
        qmodel = load_quant_state(load_model(model), state)
        label = f"{qmodel.quant_config.recipe} {qmodel.quant_config.bits_name.upper()}"
        with CagErrorProbe(qmodel) as probe, torch.no_grad():
            for item in val:
                qmodel.predict(item.image, item.boxes)
        if not probe.stats:
            raise SamhwError(f"{state}: this state has no CAG quantizers")
        results[label] = list(probe.stats.values())
    labels = list(results)
    for label in labels[1:]:
        if [s.name for s in results[label]] != [s.name for s in results[labels[0]]]:
            raise SamhwError(f"{label}: its CAG quantizers differ from {labels[0]}'s, so the rows would not line up")
    return results, len(val)


def verify_cag_error(states: list[str], model: str, data: str, images: int, command: str,
                     out: str | Path = "docs/cag_error.md") -> Path:
    """Write the table of every state's CAG quantizers side by side, and its plot (.png)."""
    from .report import generated_by, write_report

    results, n_images = probe_states(states, model, data, images)
    labels = list(results)
    header = "| quantizer | " + " | ".join(f"{lab}: clipped % | rel. error | min/max rel. error" for lab in labels) + " |"
    lines = [header, "|---|" + "---|---|---|" * len(labels)]
    for i, entry in enumerate(results[labels[0]]):
        lines.append(f"| {short(entry.name)} | " + " | ".join(c for lab in labels for c in _cells([results[lab][i]])) + " |")
    lines.append("| **mean over quantizers** | " + " | ".join(c for lab in labels for c in _cells(results[lab])) + " |")
    out = Path(out)
    png = out.with_suffix(".png")
    write_report(out, [
        "# CAG input quantizers: clipping and error per group count", "",
        generated_by(command, torch.get_num_threads()), "",
        f"Inputs: each quantized model's own activations on the first {n_images} coco_tiny val images with their "
        "ground-truth boxes (at most 16). `clipped %`: elements whose code falls outside the group's range; "
        "`rel. error`: sum (x^ - x)^2 / sum x^2 of the CAG quantizer; `min/max rel. error`: the same for a "
        "per-tensor min/max quantizer fitted to that very input (an oracle range, never clipping).", "",
        *lines, "", f"![relative error per CAG quantizer]({png.name})", ""])
    _plot(results, png)
    print(lines[-1])
    return out

"""The softmax unit's RTL on real LiteMedSAM scores: every code against the integer definition.

    python scripts/softmax_unit_cosim.py --bundle runs/bundle_ahcptq_w4a4 --lanes 4 --rows 48 \
        --out docs/softmax_unit_cosim.md

The whole-model reference (`sw/ref/run.py`) runs on the first val image with its first ground-truth box;
at every attention it records the integer scores QK^T. Of each attention, ``--rows`` rows spread evenly
over its windows, heads and queries (with their TinyViT bias rows) go through `hw.softmax.LogSoftmaxUnit`
in Verilator (`sim/softmax_cosim.py`); its codes are compared with `sw.ref.log_softmax.LogSoftmax.codes`
on the same rows, bit for bit, and the cycle each row goes in and the last code comes out with the cycle
model `schedule`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sw.ref.steps import IntegerLayers  # noqa: E402


class ScoreRecorder(IntegerLayers):
    """This reference, keeping every attention's integer scores (the first call of each layer)."""

    def __init__(self):
        self.recorded: dict[str, tuple] = {}

    def probabilities(self, layer, scores, q):
        self.recorded.setdefault(layer.name, (layer, np.array(scores)))
        return super().probabilities(layer, scores, q)


def recorded_scores(bundle_dir: str, data: str | None) -> tuple[dict, int]:
    import torch

    from sw.bundle import load_bundle
    from sw.data.coco import DEFAULT_COCO_ROOT, resolve_coco_folder
    from sw.data.images import load_rgb
    from sw.eval.benchmark import select_images
    from sw.models import load_model
    from sw.ref.run import decode_masks, encode_image

    bundle = load_bundle(bundle_dir)
    split = resolve_coco_folder(data or DEFAULT_COCO_ROOT, "val")
    model = load_model(bundle.header.model, None)
    for image_id in select_images(split):
        boxes = np.array([i.box_xyxy for i in split.instances(image_id)], np.float32).reshape(-1, 4)
        if len(boxes):
            break
    with torch.no_grad():
        x, meta = model.preprocess(load_rgb(split.image_path(image_id)))
        box_in = model.boxes_to_input(boxes[:1], meta).double().numpy()
    recorder = ScoreRecorder()
    embedding = encode_image(bundle, x.double().numpy(), recorder)
    decode_masks(bundle, embedding, box_in, recorder)
    return recorder.recorded, image_id


def sample_rows(scores: np.ndarray, softmax, count: int):
    """``count`` rows spread evenly over the layer's windows, heads and queries, with their bias rows."""
    heads, nq, nk = scores.shape[-3:]
    flat = scores.reshape(-1, nk)
    picks = np.unique(np.linspace(0, len(flat) - 1, min(count, len(flat))).round().astype(np.int64))
    bias = None
    if softmax.bias is not None:
        head, query = (picks // nq) % heads, picks % nq
        bias = softmax.bias[head, query]
    return flat[picks], bias, picks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default="runs/bundle_ahcptq_w4a4")
    p.add_argument("--data", default=None, help="COCO root (default ../shared/data/coco_tiny)")
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--max-keys", type=int, default=4096)
    p.add_argument("--rows", type=int, default=48, help="rows per attention layer")
    p.add_argument("--work", default="build/softmax_cosim")
    p.add_argument("--out", default="docs/softmax_unit_cosim.md")
    p.add_argument("--activity", default="docs/estimate_inputs/activity_softmax_unit.json",
                   help="toggle sums of the unit over all rows (Verilator toggle coverage), for the estimate")
    args = p.parse_args()

    from tqdm import tqdm

    from hw.softmax.constants import LayerConstants
    from hw.softmax.unit import UnitWidths, schedule
    from sim.softmax_cosim import cosimulate
    from sw.atomic_file import write_atomic
    from sw.ref.layers import probabilities_from_scores
    from sw.ref.log_softmax import LogSoftmax

    start = time.perf_counter()
    recorded, image_id = recorded_scores(args.bundle, args.data)
    widths = UnitWidths(lanes=args.lanes, max_keys=args.max_keys)
    table, totals = [], {"codes": 0, "equal": 0, "rows": 0, "cycles_equal": 0, "events": 0, "host_equal": 0}
    activity = {"register": {"toggles": 0, "bits": 0}, "comb": {"toggles": 0, "bits": 0}, "cycles": 0}
    for name, (layer, scores) in tqdm(recorded.items(), desc="attentions", unit="layer"):
        softmax = LogSoftmax.of(layer)
        rows, bias, picks = sample_rows(scores, softmax, args.rows)
        codes, starts, done, toggles = cosimulate(widths, LayerConstants.of(softmax, widths).ports(), rows, bias, args.work,
                                          coverage=True)
        for kind in ("register", "comb"):
            activity[kind]["toggles"] += toggles[kind]["toggles"]
            activity[kind]["bits"] = toggles[kind]["bits"]        # the same design every run
        activity["cycles"] += toggles["cycles"]
        if bias is None:
            ref = softmax.codes(rows)
        else:   # each row as a head of its own, with its bias row
            ref = dataclasses.replace(softmax, bias=bias[:, None, :]).codes(rows[None, :, None, :])[0, :, 0]
        host = probabilities_from_scores(layer, scores, None).reshape(-1, scores.shape[-1])[picks]
        keys = scores.shape[-1]
        model = schedule([-(-keys // widths.lanes)] * len(rows), widths)
        equal = int((codes == ref).sum())
        same = int((starts == model["start"]).sum()) + int(done == model["done"][-1])
        table.append((name, list(scores.shape), len(rows), keys, codes.size, equal, float(np.mean(codes == host)),
                      model["done"][-1] + 1, done + 1, same))
        totals["codes"] += codes.size
        totals["equal"] += equal
        totals["rows"] += len(rows)
        totals["cycles_equal"] += same
        totals["events"] += len(rows) + 1
        totals["host_equal"] += int((codes == host).sum())
    command = "python scripts/softmax_unit_cosim.py " + " ".join(sys.argv[1:])
    ok = totals["equal"] == totals["codes"] and totals["cycles_equal"] == totals["events"]
    lines = [f"# The softmax unit in Verilator on real scores: {Path(args.bundle).name}", "",
             f"Generated by `{command}` in {time.perf_counter() - start:.0f} s; do not edit by hand.", "",
             f"`hw.softmax.LogSoftmaxUnit` with {widths.lanes} lanes, rows up to {widths.max_keys} keys, "
             f"F, E, G = {widths.frac_bits}, {widths.exp_bits}, {widths.log_bits}, in Verilator (cocotb, "
             "`sim/softmax_cosim.py`), a beat offered every cycle. Scores: the whole-model reference on val "
             f"image {image_id} and its first ground-truth box; of each attention {args.rows} rows spread over "
             "its windows, heads and queries, with their TinyViT bias rows.", "",
             f"**{totals['equal']:,} of {totals['codes']:,} codes equal to the integer definition** "
             "(`sw.ref.log_softmax`), "
             f"{totals['cycles_equal']} of {totals['events']} cycle counts (each row's first beat in, each "
             f"layer's last code out) equal to the cycle model (`schedule`): {'all' if ok else 'NOT all'}. Against the host's float step on the same rows "
             f"{100 * totals['host_equal'] / totals['codes']:.3f} % of the codes are equal (the definition's "
             "own rounding; docs/log_softmax_ahcptq_w4a4.md measures its accuracy).", "",
             "| attention | scores shape | rows | keys | codes | equal to the definition | equal to the float step | "
             "cycles, first beat in to last code out (model) | (RTL) | cycle counts equal |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, shape, n, keys, size, equal, host, model, rtl, same in table:
        lines.append(f"| {name} | {shape} | {n} | {keys} | {size} | {equal} | {100 * host:.2f} % | {model} | "
                     f"{rtl} | {same} of {n + 1} |")
    rates = {k: activity[k]["toggles"] / (activity[k]["bits"] * activity["cycles"]) for k in ("register", "comb")}
    lines += ["", f"Switching activity over all {activity['cycles']:,} cycles (Verilator toggle coverage; the "
              f"estimate reads `{args.activity}`): {rates['register']:.4f} toggles per register bit per cycle, "
              f"{rates['comb']:.4f} per combinational bit per cycle."]
    write_atomic(Path(args.out), "\n".join(lines) + "\n")
    write_atomic(Path(args.activity), json.dumps({"command": command, "bundle": args.bundle, "lanes": widths.lanes,
                                                  "max_keys": widths.max_keys, "rows": totals["rows"],
                                                  "unit": activity}, indent=1) + "\n")
    print("\n".join(lines[:8]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

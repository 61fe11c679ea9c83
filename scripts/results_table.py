"""Measure the results table: float and quantized LiteMedSAM on a COCO-format val split.

Every cell comes from a run made by this script. Records are merged into docs/results.json by
(model, recipe, bits, dataset), so later recipes append rows without re-running earlier ones; the
Markdown table and the plot are regenerated from the JSON each time.

    python scripts/results_table.py                      # FP + {minmax, percentile, omse} x {w8a8, w6a6, w4a4}
    python scripts/results_table.py --recipes omse --bits w4a4 --limit 5   # a quick partial run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sw.data.coco import DEFAULT_COCO_ROOT  # noqa: E402
from sw.report.results import RESULTS_JSON, merge_records, write_results  # noqa: E402


def code_commit() -> str | None:
    """The commit the measured code came from, "+dirty" when sw/ or scripts/ differ from it: a row is
    reproducible only at the code that produced it (float32 rounding differences cascade)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sw", "scripts"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout: the column says n/a
    return head + ("+dirty" if dirty else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="litemedsam")
    p.add_argument("--data", default=str(DEFAULT_COCO_ROOT),
                   help="COCO root: calibration on its train split, evaluation on its val split")
    p.add_argument("--recipes", nargs="+", default=["minmax", "percentile", "omse"])
    p.add_argument("--bits", nargs="+", default=["w8a8", "w6a6", "w4a4"])
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--max-prompts", type=int, default=16)
    p.add_argument("--limit", type=int, help="evaluate only the first N val images (records say so)")
    p.add_argument("--no-fp", action="store_true", help="skip the float row (its masks are still computed)")
    p.add_argument("--float-cache", help="npz of the float model's masks: loaded when it exists, else written "
                                         "after computing them (saves the float pass on later runs)")
    p.add_argument("--out", default=str(RESULTS_JSON))
    p.add_argument("--states", help="also save each calibrated model's state here (<recipe>_<bits>.safetensors), "
                                    "for 'samhw verify' and 'samhw export --quant-state'")
    args = p.parse_args(argv)

    from sw.data.coco import resolve_coco_folder
    from sw.data.sources import calibration_items
    from sw.eval.benchmark import collect_predictions, evaluate_model, run_benchmark
    from sw.eval.prediction_cache import load_predictions, save_predictions
    from sw.models import load_model
    from sw.quant.calibrate import quantize
    from sw.quant.config import make_config
    from sw.quant.state import calibration_metadata, save_quant_state
    from sw.seeding import seed_everything
    import torch

    seed_everything(0)
    split = resolve_coco_folder(args.data, "val")
    dataset = f"{Path(args.data).name}/val" + (f"[:{args.limit}]" if args.limit else "")
    model = load_model(args.model)
    base = {"model": model.name, "dataset": dataset, "code_commit": code_commit()}
    records = []

    def save() -> None:
        # After every run, so an interrupted table keeps what was measured.
        write_results(merge_records(Path(args.out), records), Path(args.out))

    start = time.perf_counter()
    cache = Path(args.float_cache) if args.float_cache else None
    source = f"{model.name} on {dataset}"
    if cache is not None and cache.exists() and args.no_fp:  # the float row times a real pass
        float_masks = load_predictions(cache, source)
    else:
        float_masks = collect_predictions(split, model.predict, limit_images=args.limit, desc="float")
        if cache is not None:
            save_predictions(float_masks, cache, source)
    fp_seconds = time.perf_counter() - start
    if not args.no_fp:
        fp = run_benchmark(split, float_masks, limit_images=args.limit, progress=False)
        records.append({**base, "recipe": "fp", "weight_bits": 32, "act_bits": 32, "ap": fp.ap,
                        "miou_gt": fp.miou_gt, "miou_fp": 1.0, "calib_seconds": 0.0,
                        "eval_seconds": round(fp_seconds, 1)})
        save()

    # Explicitly --data's train split: the CLI's default calibration source (the bundled photographs)
    # is not what the table measures.
    items, described = calibration_items(args.data, args.calib_images, args.max_prompts)
    print(f"calibration: {len(items)} images from {described}", file=sys.stderr)
    for recipe in args.recipes:
        for bits in args.bits:
            cpu_start = time.process_time()
            qmodel, calib_seconds = quantize(model, make_config(recipe, bits), items)
            # CPU seconds of all this process's threads: unlike wall clock, barely moved by other jobs
            # sharing the machine, so rows measured on a busy machine stay comparable.
            calib_cpu = time.process_time() - cpu_start
            if args.states:
                save_quant_state(qmodel, Path(args.states) / f"{recipe}_{bits}.safetensors",
                                 extra=calibration_metadata(calib_seconds, len(items)))
            start = time.perf_counter()
            result = evaluate_model(split, qmodel, reference_masks=float_masks, limit_images=args.limit)
            cfg = qmodel.quant_config
            records.append({**base, "recipe": recipe, "weight_bits": cfg.weight_bits, "act_bits": cfg.act_bits,
                            "ap": result.ap, "miou_gt": result.miou_gt, "miou_fp": result.miou_fp,
                            "calib_seconds": round(calib_seconds, 1), "calib_cpu_seconds": round(calib_cpu, 1),
                            "torch_threads": torch.get_num_threads(),
                            "eval_seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(records[-1]), file=sys.stderr)
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())

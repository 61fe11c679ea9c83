"""``samhw estimate --measure``: the measured inputs of the estimate, each written to its own file in the
inputs folder (default docs/estimate_inputs/), which ``samhw estimate`` then only reads:

    cpu_<model>.json          the float model on this machine's CPU (torch; ``cpu.py``)
    host_<bundle>.json        the host steps of sw/ref, per image and per box (``host.py``)
    activity_<core>.json      toggle activity of the core's RTL, 4x4 PEs, real layer slices (Verilator;
                              ``sim/core_activity.py``), for the given core and for the INT8 core
                              (``subject_activity``: the given core's only, the baselines' files kept)
    activity_fp32_lane.json   toggle activity of one FP32 lane on real operands (``sim/fp32_activity.py``)
    synthesis.json            a copy of the synthesis summaries under build/ the estimate reads
                              (build/ is not tracked)

Verilator and torch are used here only, never by the estimate itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from sw.atomic_file import write_atomic

PARTS = ("resources", "host", "cpu", "activity")


def run_measure(opts, parts=PARTS, threads: int = 1, data: str | None = None, log=print) -> list[Path]:
    from hw.core.config import load_core_config
    from sw.bundle import load_bundle

    from .estimate import INT8_CORE, _inputs
    from .resources import load_resources, snapshot

    inp = _inputs(opts)
    files, written = inp["files"], []
    files["resources"].parent.mkdir(parents=True, exist_ok=True)
    if "resources" in parts:
        resources = load_resources(files["resources"], core=inp["core_name"], digest=inp["core"].digest)
        write_atomic(files["resources"],
                     json.dumps(snapshot(resources, inp["core_name"], files["resources"]), indent=1) + "\n")
        written.append(files["resources"])
        log(f"wrote {files['resources']} ({len(resources.entries)} summaries; missing: {resources.missing or 'none'})")
    bundle = load_bundle(opts.bundle)
    if "host" in parts:
        from .host import measure_host
        write_atomic(files["host_subject"], json.dumps(measure_host(bundle), indent=1) + "\n")
        written.append(files["host_subject"])
        log(f"wrote {files['host_subject']}")
    image = box = None
    if {"cpu", "activity", "subject_activity"} & set(parts):
        from sw.data.coco import DEFAULT_COCO_ROOT, val_image_with_box
        from sw.models.inputs import reference_inputs
        path, box_xyxy = val_image_with_box(data or str(DEFAULT_COCO_ROOT), 0)
    if "cpu" in parts:
        from .cpu import measure_cpu
        for model, key in (("litemedsam", "cpu_litemedsam"), ("sam_vit_b", "cpu_sam_vit_b")):
            result = measure_cpu(model, path, box_xyxy, threads, repeats=3 if model == "litemedsam" else 1)
            write_atomic(files[key], json.dumps(result, indent=1) + "\n")
            written.append(files[key])
            log(f"wrote {files[key]}: encoder {result['encoder_s']:.3f} s, decoder {result['decoder_s']:.3f} s")
    if {"activity", "subject_activity"} & set(parts):
        from sim.core_activity import measure, small_config

        image, box = reference_inputs(bundle.header.model, None, path, box_xyxy)
        cores = [(opts.core, opts.bundle, "activity_subject")]
        if "activity" in parts:
            cores.append((INT8_CORE, opts.int8_bundle, "activity_int8"))
        for core, bundle_path, key in cores:
            config = small_config(load_core_config(core), 4, 4)
            result = measure(load_bundle(bundle_path), config, image, box, "sim_build", log=log)
            result.update(image=path.name, bundle_path=str(bundle_path))
            write_atomic(files[key], json.dumps(result, indent=1) + "\n")
            written.append(files[key])
    if "activity" in parts:
        from sim.fp32_activity import measure as measure_lane

        result = measure_lane(opts.int8_bundle)
        write_atomic(files["activity_fp32"], json.dumps(result, indent=1) + "\n")
        written.append(files["activity_fp32"])
    return written

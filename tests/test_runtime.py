"""The runtime (hw/runtime): the whole model with every quantized layer on a backend of the core, every host
step in sw/ref, each layer compared with sw/ref; ``samhw infer``; the Verilator backend's persistent
simulator and bulk memory path (sim/core_backend.py).

The bundle is a real LiteMedSAM MinMax W8A8 export (one calibration image, seconds to make); the inputs
are a real coco_tiny val image and its first box, preprocessed by the model. A whole image on the
functional model takes about a minute here, so the tests offload a slice (an encoder block, the decoder)
and leave the other layers to sw/ref; the whole model on all val images is scripts/whole_model.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hw.compiler.model import bundle_identity, record_invocations
from hw.compiler.program import build_program
from hw.core.config import PRESETS

CORE = PRESETS["w8-16x16"]
BLOCK = "image_encoder.layers.2.blocks.0."
DECODER = "mask_decoder."


@pytest.fixture(scope="module")
def bundle_dir(litemedsam, calib_items, tmp_path_factory):
    from sw.export.bundle import export_bundle
    from sw.quant.calibrate import quantize
    from sw.quant.config import make_config

    qmodel, _ = quantize(litemedsam, make_config("minmax", "w8a8"), calib_items[:1], progress=False)
    return export_bundle(qmodel, calib_items[:1], tmp_path_factory.mktemp("rt") / "bundle", progress=False)


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    from sw.bundle import load_bundle

    return load_bundle(bundle_dir)


@pytest.fixture(scope="module")
def val_image(coco_root):
    """The first val image with a box (path, RGB array, its first two boxes in image pixels)."""
    from sw.data.coco import resolve_coco_folder
    from sw.data.images import load_rgb

    split = resolve_coco_folder(coco_root, "val")
    for image_id in split.image_ids:
        instances = split.instances(image_id)
        if len(instances) >= 2:
            path = split.image_path(image_id)
            return path, load_rgb(path), np.array([i.box_xyxy for i in instances[:2]], np.float64)
    pytest.fail("no val image with two boxes")


@pytest.fixture(scope="module")
def model_inputs(litemedsam, val_image):
    import torch

    _, image, boxes = val_image
    with torch.no_grad():
        x, meta = litemedsam.preprocess(image)
        box = litemedsam.boxes_to_input(boxes.astype(np.float32), meta)
    return x.double().numpy(), box.double().numpy()


@pytest.fixture(scope="module")
def reference(bundle, model_inputs):
    from hw.runtime import reference_model

    from hw.runtime.threads import single_blas_thread

    with single_blas_thread():
        return reference_model(bundle, *model_inputs)


def _program(bundle, config, prefixes):
    calls = [c for c in record_invocations(bundle).calls if c[0].layer.startswith(prefixes)]
    return build_program(config, calls, bundle_identity(bundle))


def _offload(prefixes):
    return lambda layer, op: layer.startswith(prefixes)


def test_a_block_and_the_decoder_on_fsim_equal_sw_ref_code_for_code(bundle, model_inputs, reference):
    """Two boxes through one decode call: every decoder layer runs twice (the program holds one box)."""
    from hw.runtime import FsimBackend, layer_table, run_model, verdict
    from hw.runtime.threads import single_blas_thread

    prefixes = (BLOCK, DECODER)
    program = _program(bundle, CORE, prefixes)
    ticks = []
    with single_blas_thread():
        run = run_model(bundle, program, FsimBackend(), *model_inputs, offload=_offload(prefixes), progress=ticks.append)
    on = run.offloaded()
    assert {r.layer.rsplit(".", 1)[0] for r in on if r.layer.startswith(BLOCK)} >= {BLOCK + "attn", BLOCK + "mlp"}
    assert len(on) == len(program.invocations) and run.runs == len(ticks) == 7 + 2 * (len(on) - 7)
    assert all(r.runs == 2 for r in on if r.layer.startswith(DECODER))
    assert run.elements > 1_000_000 and run.mismatches == 0 and run.ok
    assert any(r.where == "sw/ref" for r in run.layers)          # the rest of the encoder stayed on the host
    assert run.cycles == sum(r.cycles for r in on) > 0 and all(r.cycles > 0 for r in on)
    # every layer equal to sw/ref means the run is the reference run: the same logits, bit for bit
    embedding, logits, iou = reference
    assert np.array_equal(run.embedding, embedding) and np.array_equal(run.logits, logits)
    assert np.array_equal(run.iou, iou)
    table = layer_table(run)
    assert table[0].startswith("| # | layer | kind | on | runs | MACs | cycles | utilization | host ms")
    assert len(table) == 2 + len(run.layers) + len(run.host_tail) + 1
    assert "0 mismatches" in verdict(run)


def test_cycles_and_hazards_do_not_depend_on_the_codes(bundle, reference):
    """The backend computes both once per invocation; here they are recomputed on other codes."""
    from hw.core.timing import run_timing
    from hw.runtime import Accelerator, FsimBackend
    from sw.ref.run import decode_masks

    program = _program(bundle, CORE, ("mask_decoder.transformer.layers.0.",))
    embedding = reference[0]
    runs = []
    for box in ([[20.0, 30.0, 120.0, 200.0]], [[100.0, 5.0, 250.0, 90.0]]):
        backend = FsimBackend(check_hazards="always", cycles="always")
        backend.open(program)
        acc = Accelerator(program, backend, offload=_offload(("mask_decoder.transformer.layers.0.",)))
        decode_masks(bundle, embedding, np.array(box), acc)
        runs.append({k: (r.cycles, r.mismatches) for k, r in acc.records.items() if r.where == "fsim"})
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) == len(program.invocations)
    assert all(runs[0][k][0] == runs[1][k][0] and runs[0][k][1] == runs[1][k][1] == 0 for k in runs[0])
    inv = program.invocations[0]
    assert runs[0][inv.spec.layer, inv.spec.op][0] == sum(run_timing(CORE, s, program.memory()).cycles for s in inv.parts)


def test_a_wrong_code_is_counted_at_its_layer_only(bundle, reference):
    from hw.runtime import Accelerator, FsimBackend, ProgramMismatch
    from hw.runtime.backend import Outcome
    from sw.ref.run import decode_masks

    target = "mask_decoder.transformer.layers.1.mlp.lin1"

    class Faulty(FsimBackend):
        def run(self, inv, inputs):
            outcome = super().run(inv, inputs)
            if inv.spec.layer == target:
                out = outcome.outputs["output"].copy()
                out.flat[5] = (out.flat[5] + 1) % 256
                return Outcome({"output": out}, outcome.cycles, outcome.part_cycles, outcome.seconds)
            return outcome

    prefixes = ("mask_decoder.transformer.layers.1.",)
    program = _program(bundle, CORE, prefixes)
    backend = Faulty()
    backend.open(program)
    acc = Accelerator(program, backend, offload=_offload(prefixes))
    decode_masks(bundle, reference[0], np.array([[20.0, 30.0, 120.0, 200.0]]), acc)
    bad = {r.layer: r.mismatches for r in acc.records.values() if r.mismatches}
    assert bad == {target: 1}

    # a layer the program does not hold: one line naming the invocation
    acc = Accelerator(program, backend)
    with pytest.raises(ProgramMismatch, match=r"no invocation for mask_decoder\.transformer\.layers\.0\..*another bundle"):
        decode_masks(bundle, reference[0], np.array([[20.0, 30.0, 120.0, 200.0]]), acc)


def _error_line(capsys, argv) -> str:
    from sw.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samhw: error: ")
    return err[0]


def test_infer_refuses_bad_input_in_one_line_and_writes_nothing(capsys, tmp_path, bundle_dir, bundle, val_image):
    import shutil

    from hw.compiler.store import write_program

    path = str(val_image[0])
    out = tmp_path / "out"
    base = ["infer", str(bundle_dir), "--out", str(out), "--no-progress"]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert "cannot read image" in _error_line(capsys, base + ["--image", str(bad)])
    assert "does not exist" in _error_line(capsys, base + ["--image", str(tmp_path / "missing.png")])
    width, height = val_image[1].shape[1], val_image[1].shape[0]
    line = _error_line(capsys, base + ["--image", path, "--box", "10", "10", str(width + 5), "50"])
    assert f"outside the {width}x{height} image" in line
    assert "groups of four" in _error_line(capsys, base + ["--image", path, "--box", "1", "2", "3"])
    # a program compiled from another bundle (here: the same layers, another manifest)
    other = tmp_path / "other_bundle"
    shutil.copytree(bundle_dir, other)
    manifest = other / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=3))
    program_dir = write_program(_program(bundle, CORE, ("mask_decoder.transformer.layers.0.self_attn",)),
                                tmp_path / "program")
    line = _error_line(capsys, ["infer", str(other), "--out", str(out), "--image", path, "--program",
                                str(program_dir), "--no-progress"])
    assert "compiled from a bundle with manifest_sha256" in line
    line = _error_line(capsys, base + ["--image", path, "--program", str(program_dir), "--core", "w4-16x16"])
    assert "not this core" in line
    only = ["--only", "mask_decoder.transformer.layers.0.self_attn"]
    assert "needs --port" in _error_line(capsys, base + ["--image", path, "--backend", "board"] + only)
    line = _error_line(capsys, base + ["--image", path, "--backend", "board", "--port", str(tmp_path / "ttyNONE")] + only)
    assert str(tmp_path / "ttyNONE") in line
    assert not out.exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    line = _error_line(capsys, ["infer", str(bundle_dir), "--image", path, "--out", str(tmp_path / "busy")])
    assert "holds other files" in line and (tmp_path / "busy" / "notes.txt").exists()


def test_infer_writes_masks_overlay_and_the_layer_table(capsys, tmp_path, bundle_dir, val_image):
    from sw.cli import main

    out = tmp_path / "infer"
    x0, y0, x1, y1 = (float(v) for v in val_image[2][0])
    argv = ["infer", str(bundle_dir), "--image", str(val_image[0]), "--box", str(x0), str(y0), str(x1), str(y1),
            "--only", "mask_decoder.transformer.layers.0.self_attn", "mask_decoder.transformer.layers.1.mlp",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "0 mismatches; every layer equals sw/ref" in printed
    assert sorted(p.name for p in out.iterdir()) == ["layers.md", "masks.npz", "overlay.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["equal_to_reference"] and summary["mismatches"] == 0 and summary["outputs_compared"] > 0
    on = [r for r in summary["layers"] if r["on"] == "fsim"]
    assert len(on) == 8 and all(r["cycles"] > 0 and r["macs"] > 0 for r in on)
    assert summary["cycles"] == sum(r["cycles"] for r in on)
    masks = np.load(out / "masks.npz")
    assert masks["masks"].shape == (1, *val_image[1].shape[:2]) and masks["masks"].dtype == bool
    assert masks["logits"].shape == (1, 1, 256, 256)
    table = (out / "layers.md").read_text()
    assert "| `mask_decoder.transformer.layers.0.self_attn:scores` | decoder QK^T | fsim | 1 |" in table
    # a second run replaces its own earlier outputs
    assert main(argv) == 0


def test_memh_files_round_trip():
    from sim.core_backend import hex_lines, memh_file, nonzero_runs, parse_memh, word_runs

    rng = np.random.default_rng(1)
    words = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    text = hex_lines(words)
    assert text.count(b"\n") == 5 and int(text[:64], 16) == int.from_bytes(words[0].tobytes(), "little")
    assert np.array_equal(parse_memh(text, 5, 32), words)
    assert np.array_equal(parse_memh(b"// dump\n@10\n" + b"\n".join(ln.lstrip(b"0") or b"0" for ln in text.split()),
                                     5, 32), words)
    assert memh_file([(16, words[:2]), (3, words[:0])]).startswith(b"@10\n")
    image = np.zeros(32 * 100, np.uint8)
    image[32 * 5] = image[32 * 9 + 1] = image[32 * 60] = 1
    assert [(a, len(b)) for a, b in nonzero_runs(image, 32)] == [(5, 5), (60, 1)]
    assert word_runs([(5, 3), (7, 4), (20, 2)], 30, [(8, 1)]) == [(5, 3), (9, 2), (20, 2)]


# ---- the core's RTL -----------------------------------------------------------------------------

# One whole encoder block (layers.2.blocks.0: qkv, QK^T and A.V over 25 windows of 196 tokens, proj,
# depthwise local conv, fc1, fc2) and the whole decoder for one box on a 16 x 16 core: 7 + 46
# invocations, about 13 M cycles; 5.5 minutes on this shared 2-core machine with the simulator cached,
# plus about 3 minutes to build the 16 x 16 simulator when none is. A 4 x 4 core builds faster but needs
# 14 times the cycles (195 M, 15-30 minutes).


@pytest.mark.verilator
def test_an_encoder_block_and_the_decoder_on_the_rtl_equal_fsim_word_for_word_and_sw_ref(bundle, model_inputs,
                                                                                          reference):
    from test_core_verilator import _missing

    reason = _missing()
    if reason:
        pytest.skip(f"verilator is not installed: {reason}")
    from hw.runtime import run_model
    from hw.runtime.threads import single_blas_thread
    from sim.core_backend import VerilatorBackend
    from sw.infer import memory_words

    prefixes = (BLOCK, DECODER)
    program = _program(bundle, CORE, prefixes)
    image, boxes = model_inputs
    with single_blas_thread(), VerilatorBackend(CORE, memory_words(program), "sim_build") as backend:
        run = run_model(bundle, program, backend, image, boxes[:1], offload=_offload(prefixes))
    on = run.offloaded()
    assert len(on) == len(program.invocations)
    assert {r.layer for r in on if r.layer.startswith(BLOCK)} >= {BLOCK + "attn.qkv", BLOCK + "attn.proj",
                                                                   BLOCK + "local_conv", BLOCK + "mlp.fc1",
                                                                   BLOCK + "mlp.fc2"}
    assert {r.kind for r in on} >= {"linear uniform input", "conv 3x3 depthwise", "QK^T", "A.V uniform softmax",
                                    "decoder linear uniform input", "decoder QK^T", "decoder A.V uniform softmax"}
    assert run.elements > 5_000_000 and run.mismatches == 0
    assert run.words > 1_000_000 and run.word_mismatches == 0
    assert not run.cycle_differences and run.cycles == sum(r.model_cycles for r in on) > 10_000_000
    # every offloaded layer equal to sw/ref: the decoder's output is the reference's own, bit for bit
    from sw.ref.run import decode_masks

    assert np.array_equal(run.embedding, reference[0])
    with single_blas_thread():
        logits, iou = decode_masks(bundle, reference[0], boxes[:1])
    assert np.array_equal(run.logits, logits) and np.array_equal(run.iou, iou)

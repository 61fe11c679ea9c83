"""The samhw command line: one-line errors for bad input, the main job end to end, and one voice: the
same option spellings, calibration rule, record keys and progress switch in every subcommand."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sw import cli
from sw.cli import main
from sw.data.sources import CALIB_RULE, SAMPLE_PHOTOGRAPHS, CalibOptions


def _error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("samhw: error: ")
    return err[0]


def test_unknown_bit_width(capsys, tmp_path):
    line = _error_line(capsys, ["quantize", "--recipe", "minmax", "--bits", "w3a3", "--out", str(tmp_path / "s")])
    assert "unsupported bit width 'w3a3'" in line


def test_unknown_recipe(capsys, tmp_path):
    line = _error_line(capsys, ["quantize", "--recipe", "magic", "--out", str(tmp_path / "s")])
    assert "unknown recipe 'magic'" in line


def test_folder_without_images(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    line = _error_line(capsys, ["quantize", "--recipe", "minmax", "--calib", str(tmp_path / "empty"),
                                "--out", str(tmp_path / "s")])
    assert "no images found" in line and "empty" in line


def test_malformed_coco_json(capsys, tmp_path):
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{not json")
    line = _error_line(capsys, ["eval", "--data", str(tmp_path), "--split", "val"])
    assert "malformed COCO json" in line and "instances_val2017.json" in line


def test_missing_checkpoint_path(capsys, tmp_path):
    line = _error_line(capsys, ["eval", "--model", "sam_vit_b", "--checkpoint", str(tmp_path / "x.pth")])
    assert "checkpoint file not found" in line


def test_corrupt_quant_state(capsys, tmp_path):
    bad = tmp_path / "state.safetensors"
    bad.write_bytes(b"\x00" * 64)
    line = _error_line(capsys, ["eval", "--quant-state", str(bad), "--limit", "1"])
    assert "corrupt quantization state" in line


def test_main_job_writes_overlay_and_summary(tmp_path, capsys):
    out = tmp_path / "main"
    assert main(["--no-progress", "run", "--calib-images", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "litemedsam" and summary["bits"] == "w8a8"
    assert set(summary["samples"]) == {"astronaut", "chelsea", "coffee", "rocket"}
    assert 0.0 <= summary["samples_mean_iou_vs_float"] <= 1.0
    png = (out / "overlay.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "overlay.png" in (out / "summary.md").read_text()
    # the whole chain: exported, compiled, the first photograph through every layer on the core's model
    acc = summary["accelerator"]
    assert acc["ok"] and acc["invocations"] == 124 and len(acc["images"]) == 1
    image = acc["images"][0]
    assert image["mismatches"] == 0 and image["outputs_compared"] > 100_000_000 and image["masks_identical_to_reference"]
    assert image["cycles"] == image["encoder_cycles"] + image["decoder_cycles"] > 100_000_000
    assert (out / "accelerator.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## The quantized model on the accelerator" in (out / "summary.md").read_text()


def test_quantize_then_eval_from_state(tmp_path, capsys, coco_root):
    state = tmp_path / "q.safetensors"
    assert main(["--no-progress", "quantize", "--recipe", "minmax", "--bits", "w8a8", "--calib", str(coco_root),
                 "--calib-images", "2", "--max-prompts", "2", "--out", str(state)]) == 0
    record_path = tmp_path / "r.json"
    assert main(["--no-progress", "eval", "--quant-state", str(state), "--data", str(coco_root),
                 "--limit", "2", "--json", str(record_path)]) == 0
    record = json.loads(record_path.read_text())
    assert record["recipe"] == "minmax" and record["weight_bits"] == 8
    assert 0.0 < record["miou_fp"] <= 1.0 and 0.0 <= record["miou_gt"] <= 1.0
    assert "miou_ref" not in record
    # What the state recorded about its calibration, under docs/results.json's keys.
    assert record["calib_images"] == 2 and record["calib_seconds"] > 0
    assert record["torch_threads"] == torch.get_num_threads()


def _val_only_coco(src, dst, images: int = 2):
    """A COCO root of our own: the first ``images`` val images of ``src`` and their annotations, no train split."""
    ann = json.loads((src / "annotations" / "instances_val2017.json").read_text())
    keep = sorted(ann["images"], key=lambda i: i["file_name"])[:images]
    ids = {i["id"] for i in keep}
    (dst / "val2017").mkdir(parents=True)
    (dst / "annotations").mkdir()
    for info in keep:
        shutil.copy(src / "val2017" / info["file_name"], dst / "val2017" / info["file_name"])
    ann.update(images=keep, annotations=[a for a in ann["annotations"] if a["image_id"] in ids])
    (dst / "annotations" / "instances_val2017.json").write_text(json.dumps(ann))
    return dst


def test_eval_recipe_calibrates_by_the_common_rule_on_a_val_only_folder(tmp_path, capsys, coco_root):
    """No --calib: the bundled photographs, as for quantize/export/run, so a folder without a train
    split evaluates; the record says how many images calibrated it."""
    data = _val_only_coco(coco_root, tmp_path / "mycoco")
    record_path = tmp_path / "r.json"
    assert main(["eval", "--no-progress", "--recipe", "minmax", "--data", str(data), "--calib-images", "1",
                 "--limit", "1", "--json", str(record_path)]) == 0
    assert f"on 1 images from {SAMPLE_PHOTOGRAPHS}" in capsys.readouterr().err
    record = json.loads(record_path.read_text())
    assert record["dataset"] == "mycoco/val" and record["calib_images"] == 1 and record["miou_fp"] > 0


def test_calibration_sources():
    items, described = CalibOptions(images=2).items()
    assert described == SAMPLE_PHOTOGRAPHS and len(items) == 2


@pytest.mark.parametrize("command", ["run", "quantize", "eval", "export"])
def test_every_calibrating_command_states_the_one_rule(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert " ".join(CALIB_RULE.split()) in text


@pytest.mark.parametrize("argv,progress", [(["recipes"], True), (["--no-progress", "recipes"], False),
                                           (["recipes", "--no-progress"], False)])
def test_no_progress_before_or_after_the_subcommand(monkeypatch, argv, progress):
    seen = []
    monkeypatch.setitem(cli.COMMANDS, "recipes", lambda args, progress: seen.append(progress) or 0)
    assert main(argv) == 0
    assert seen == [progress]


def test_recipes_lists_settings_generated_from_the_configs(monkeypatch, capsys):
    from sw.quant.config import BITS_SETTINGS, RECIPES

    monkeypatch.setitem(RECIPES, "test-only", {"act_observer": "minmax", "weight_observer": "mse", "recon_iters": 7})
    monkeypatch.setitem(BITS_SETTINGS, ("test-only", "w4a4"), {"recon_iters": 9})
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[out.index(next(line for line in out if line.startswith("test-only"))) + 1].split() == [
        "at", "w4a4:", "recon_iters=9"]
    lines = {line.split()[0]: line for line in out}
    assert "recon_iters=50" in lines["saqsam"] and "scale_lr=0.002" in lines["saqsam"]
    assert "recon" not in lines["minmax"]
    assert lines["test-only"].split()[1:] == ["act_observer=minmax", "weight_observer=mse", "recon_iters=7"]
    assert "recon_iters=100" in lines["defaults"] and "scale_lr=4e-05" in lines["defaults"]


# ---- hardware: generate and simulate the programmable core ---------------------------------------

TINY_CORE = dict(rows=2, cols=2, act_words=16, wgt_words=16, out_words=16, param_words=16, prog_words=16,
                 max_shift=15, pe_acc_bits=40, max_segments=4)


def _core_file(tmp_path, name="core.json", **fields):
    path = tmp_path / name
    path.write_text(json.dumps(fields))
    return path


def test_generate_writes_the_core_verilog_and_its_description(tmp_path, capsys):
    from hw.core.config import CoreConfig, load_core_config

    out = tmp_path / "gen"
    assert main(["generate", "--core", str(_core_file(tmp_path, **TINY_CORE)), "--out", str(out)]) == 0
    config = CoreConfig(**TINY_CORE)
    assert f"core {config.digest}, 2x2 PEs" in capsys.readouterr().out
    verilog = (out / "core.v").read_text()
    assert "module Core(" in verilog and "m_axi_rdata" in verilog and "reg_wdata" in verilog
    design = json.loads((out / "core.json").read_text())
    assert design["top"] == "Core" and design["verilog"] == "core.v" and design["digest"] == config.digest
    s = design["summary"]
    assert (s["rows"], s["cols"], s["act_bits"], s["weight_bits"], s["bus_bits"]) == (2, 2, 8, 8, 256)
    assert s["buffer_words"] == {"act": 16, "wgt": 16, "out": 16, "param": 16, "prog": 16}
    assert s["formats"] == ["uniform", "cag", "hluq", "agq"]
    assert {"name": "m_axi_rdata", "direction": "in", "width": 256} in design["ports"]
    assert s["pins"] == sum(p["width"] for p in design["ports"])
    # Its "config" alone is a core config file naming the same core.
    again = _core_file(tmp_path, "again.json", **design["config"])
    assert load_core_config(again).digest == config.digest
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("fields,problem", [
    (None, "no such core config file"),
    ({"rows": 2, "colour": 3}, "unknown field 'colour'"),
    ({"rows": 2, "act_bits": 5}, "bad.json: act_bits and weight_bits must be 4 or 8"),
    ({"rows": 1}, "bad.json: the core generator does not build this configuration: rows and cols must be powers of two"),
])
def test_generate_refuses_a_bad_core_config_in_one_line(tmp_path, capsys, fields, problem):
    spec = str(tmp_path / "missing.json") if fields is None else str(_core_file(tmp_path, "bad.json", **fields))
    line = _error_line(capsys, ["generate", "--core", spec, "--out", str(tmp_path / "gen")])
    assert problem in line
    assert not (tmp_path / "gen").exists()


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A bundle of two synthetic layers (no torch), enough for the argument checks of 'simulate'."""
    import numpy as np

    from sw.bundle import Bundle, write_bundle
    from sw.bundle.store import BundleHeader
    from synthetic_layers import attention_layer, linear_layer

    rng = np.random.default_rng(0)
    layers = [linear_layer(rng, "uniform", 8, 4, name="enc.fc"), attention_layer(rng, 2, 7, 8, name="enc.attn")]
    header = BundleHeader(model="litemedsam", recipe="minmax", weight_bits=4, act_bits=4, host_bits=16, tool="test",
                          calibration_images=1, quant_config={})
    return write_bundle(Bundle(header, {layer.name: layer for layer in layers}), tmp_path_factory.mktemp("b") / "b")


@pytest.mark.parametrize("args,problem", [
    (["--core", "w9-1x1"], "no such core config file"),
    (["--case", "enc.nope"], "missing layer 'enc.nope'"),
    (["--case", "enc.attn"], "--case enc.attn: an attention layer runs as enc.attn:scores (QK^T), enc.attn:values"),
    (["--case", "enc.attn:keys"], "an attention layer runs as"),
    (["--case", "enc.fc:scores"], "'enc.fc' is a linear layer, which takes no ':scores'"),
    (["--image-index", "-1"], "--image-index must be >= 0"),
    (["--image-index", "2"], "--image-index 2: "),
])
def test_simulate_argument_errors_are_one_line(tiny_bundle, coco_root, tmp_path, capsys, args, problem):
    data = _val_only_coco(coco_root, tmp_path / "mycoco")
    line = _error_line(capsys, ["simulate", str(tiny_bundle), "--data", str(data), *args])
    assert problem in line
    if args[0] == "--image-index" and args[1] == "2":
        assert "has 2 val images with a box" in line


def test_simulate_of_a_missing_bundle_is_one_line(tmp_path, capsys):
    assert "samhw: error: " in _error_line(capsys, ["simulate", str(tmp_path / "nothing")])


class _Case:
    def __init__(self, layer, op, words=0, cycles=(100, 100), mismatches=0):
        self.layer, self.op, self.elements, self.mismatches = layer, op, 10, mismatches
        self.word_mismatches, (self.cycles, self.model_cycles) = words, cycles


@pytest.mark.parametrize("case_result,status,extra", [
    (_Case("enc.fc", None), 0, None),
    (_Case("enc.fc", None, mismatches=3), 1, None),
    (_Case("enc.fc", None, words=2), 1, "enc.fc (2 words, 100 vs 100 cycles)"),
    (_Case("enc.fc", None, cycles=(101, 100)), 1, "enc.fc (0 words, 101 vs 100 cycles)"),
])
def test_simulate_prints_the_totals_last_and_fails_on_any_difference(monkeypatch, tiny_bundle, coco_root, tmp_path,
                                                                     capsys, case_result, status, extra):
    import numpy as np
    import sim.core_cases
    from hw.core.config import PRESETS

    seen = {}

    def fake_simulate(bundle, config, image, box, work, cases):
        seen.update(config=config, cases=cases, work=work, image=image.shape, box=box.shape)
        print("one line per case")
        return [_Case("enc.attn", "scores"), case_result]

    monkeypatch.setattr(sim.core_cases, "simulate_cases", fake_simulate)
    monkeypatch.setattr(sim.core_cases, "write_report", lambda path, command, bundle, config, image_name, results:
                        seen.update(report=path, command=command, image_name=image_name))
    monkeypatch.setattr(cli, "_model_inputs", lambda model, checkpoint, path, box: (np.zeros((1, 3, 8, 8)),
                                                                                   np.zeros((1, 4))))
    argv = ["simulate", str(tiny_bundle), "--case", "enc.attn:scores", "enc.fc", "--data", str(coco_root),
            "--work", str(tmp_path / "w"), "--report", str(tmp_path / "r.md"), "--no-progress"]
    assert main(argv) == status
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "one line per case"
    assert out[-1] == f"compared 20 words, {case_result.mismatches} mismatches"
    assert (extra in out[-2]) if extra else len(out) == 2
    assert seen["config"] == PRESETS["w8-16x16"] and seen["work"] == str(tmp_path / "w")
    assert [(c.layer, c.op) for c in seen["cases"]] == [("enc.attn", "scores"), ("enc.fc", None)]
    assert seen["report"] == tmp_path / "r.md" and seen["command"].startswith("samhw simulate ")
    assert "--no-progress" not in seen["command"] and seen["image_name"].endswith(".jpg")


def test_simulate_runs_the_acceptance_set_by_default(tiny_bundle):
    import dataclasses

    from hw.core.config import PRESETS
    from sim.core_cases import ACCEPTANCE, SOFTMAX_CASES
    from sw.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    assert cli._simulation_cases(bundle, None, PRESETS["w4-16x16"]) == ACCEPTANCE
    # with the softmax path, the decoder's QK^T runs with its softmax
    fused = cli._simulation_cases(bundle, None, dataclasses.replace(PRESETS["w4-16x16"], softmax_lanes=2))
    assert set(fused) - set(ACCEPTANCE) == set(SOFTMAX_CASES)
    assert [c for c in set(ACCEPTANCE) - set(fused)] == [
        c for c in ACCEPTANCE if c.op == "scores" and c.layer.startswith("mask_decoder")]

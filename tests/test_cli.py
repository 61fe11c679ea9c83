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
    from sw.quant.config import RECIPES

    monkeypatch.setitem(RECIPES, "test-only", {"act_observer": "minmax", "weight_observer": "mse", "recon_iters": 7})
    assert main(["recipes"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "recon_iters=50" in lines["saqsam"] and "scale_lr=0.002" in lines["saqsam"]
    assert "recon" not in lines["minmax"]
    assert lines["test-only"].split()[1:] == ["act_observer=minmax", "weight_observer=mse", "recon_iters=7"]
    assert "recon_iters=100" in lines["defaults"] and "scale_lr=4e-05" in lines["defaults"]


def test_simulate_reports_totals_and_fails_on_a_mismatch(monkeypatch, tmp_path, capsys):
    import sim.cases
    import sim.runner

    class Result:
        def __init__(self, mismatches):
            self.compared, self.mismatches = 10, mismatches

    calls = {}
    monkeypatch.setattr(sim.cases, "select_specs", lambda layer, op, pes: [("spec", layer, op, pes)], raising=False)
    monkeypatch.setattr(sim.runner, "simulate", lambda bundle, inputs, specs, work: calls.setdefault(
        "results", [Result(0), Result(calls.get("bad", 0))]), raising=False)
    monkeypatch.setattr(sim.runner, "write_results_json", lambda path, results: calls.update(json=path),
                        raising=False)
    monkeypatch.setattr(sim.runner, "write_report", lambda path, bundle, results: calls.update(report=path),
                        raising=False)
    assert main(["simulate", "b", "--layer", "x", "--json", str(tmp_path / "r.json")]) == 0
    assert "compared 20 words, 0 mismatches" in capsys.readouterr().out
    assert calls["json"] == tmp_path / "r.json" and "report" not in calls
    calls.clear()
    calls["bad"] = 3
    assert main(["simulate", "b", "--report", str(tmp_path / "c.md")]) == 1
    assert "compared 20 words, 3 mismatches" in capsys.readouterr().out

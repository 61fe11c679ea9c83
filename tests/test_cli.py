"""The samhw command line: one-line errors for bad input and the main job end to end."""

from __future__ import annotations

import json

import pytest

from sw.cli import main


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
    assert 0.0 < record["miou_ref"] <= 1.0 and 0.0 <= record["miou_gt"] <= 1.0

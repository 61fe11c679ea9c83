"""Export bundle: byte-identical writes, validation of every failure mode, torch-free readers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sw.errors import SamhwError
from sw.export.bundle import export_bundle
from sw.quant.config import make_config
from sw.ref.bundle import MANIFEST, BundleError, load_bundle, write_bundle
from sw.workflow import quantize
from torchless import run_without_torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_ahcptq(tiny_sam_vit, calib_items):
    """Tiny SAM ViT with every input encoding: CAG, HLUQ, AGQ (statistics only, to stay fast)."""
    qmodel, _ = quantize(tiny_sam_vit, make_config("ahcptq", "w4a4", recon="none"), calib_items[:2], progress=False)
    return qmodel


@pytest.fixture(scope="module")
def bundle_dir(tiny_ahcptq, calib_items, tmp_path_factory) -> Path:
    return export_bundle(tiny_ahcptq, calib_items[:2], tmp_path_factory.mktemp("b") / "bundle", progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _copy(bundle_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_export_is_byte_identical_across_runs_and_round_trips(tiny_ahcptq, calib_items, bundle_dir, tmp_path):
    again = export_bundle(tiny_ahcptq, calib_items[:2], tmp_path / "again", progress=False)
    assert _files(again) == _files(bundle_dir)
    rewritten = write_bundle(load_bundle(bundle_dir), tmp_path / "rewritten")
    assert _files(rewritten) == _files(bundle_dir)


def test_bundle_carries_every_encoding(bundle_dir):
    bundle = load_bundle(bundle_dir)
    formats = {layer.params["input"]["format"] for layer in bundle.layers.values() if layer.kind == "linear"}
    assert formats == {"uniform", "cag", "hluq"}
    cag = next(l for l in bundle.layers.values() if l.kind == "linear" and l.params["input"]["format"] == "cag")
    labels, perm = cag["channel_group"], cag["permutation"]
    assert sorted(perm.tolist()) == list(range(len(labels)))
    assert (labels[perm][1:] >= labels[perm][:-1]).all()  # groups contiguous in permuted order
    attn = [l for l in bundle.layers.values() if l.kind == "attention"]
    assert attn and all(l.params["softmax"]["format"] == "agq" for l in attn)
    assert all(len(l["lut"]) == l.params["softmax"]["tau"] for l in attn)


def _expect(bundle: Path, *fragments: str) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _first_tensor_file(root: Path) -> Path:
    return root / json.loads((root / MANIFEST).read_text())["layers"][0]["file"]


def test_truncated_tensor_file_fails_its_checksum(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    path = _first_tensor_file(root)
    path.write_bytes(path.read_bytes()[:-40])
    _expect(root, str(path), "checksum mismatch")


def test_corrupt_tensor_file_with_matching_checksum_is_reported(bundle_dir, tmp_path):
    import hashlib

    root = _copy(bundle_dir, tmp_path)
    path = _first_tensor_file(root)
    path.write_bytes(b"\xff" * 64)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["layers"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / MANIFEST).write_text(json.dumps(manifest))
    _expect(root, str(path), "corrupt tensor file")


def test_wrong_schema_version_is_refused(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["schema_version"] = 99
    (root / MANIFEST).write_text(json.dumps(manifest))
    _expect(root, str(root / MANIFEST), "schema version 99 is not supported")


def test_shape_or_dtype_disagreeing_with_the_manifest_is_refused(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    spec = manifest["layers"][1]["tensors"]["weight_codes"]
    spec["shape"] = [spec["shape"][0] + 1] + spec["shape"][1:]
    (root / MANIFEST).write_text(json.dumps(manifest))
    _expect(root, "tensor 'weight_codes'", "manifest says")


def test_missing_tensor_file_and_missing_layer_are_named(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    path = _first_tensor_file(root)
    path.unlink()
    _expect(root, str(path), "is missing")

    root = _copy(bundle_dir, tmp_path / "second")
    manifest = json.loads((root / MANIFEST).read_text())
    dropped = manifest["layers"].pop(3)["name"]
    (root / MANIFEST).write_text(json.dumps(manifest))
    bundle = load_bundle(root)
    with pytest.raises(BundleError, match=f"missing layer '{dropped}'"):
        bundle.layer(dropped)


def test_missing_or_malformed_manifest(tmp_path):
    _expect(tmp_path / "nowhere", "bundle directory not found")
    (tmp_path / "empty").mkdir()
    _expect(tmp_path / "empty", "manifest not found")
    (tmp_path / "empty" / MANIFEST).write_text("{not json")
    _expect(tmp_path / "empty", "not valid JSON")


def test_failed_export_leaves_no_half_written_bundle(tiny_ahcptq, calib_items, bundle_dir, tmp_path, monkeypatch):
    target = _copy(bundle_dir, tmp_path)
    before = _files(target)
    import safetensors.numpy

    calls = {"n": 0}
    real = safetensors.numpy.save_file

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(safetensors.numpy, "save_file", failing)
    with pytest.raises(OSError):
        export_bundle(tiny_ahcptq, calib_items[:2], target, progress=False)
    assert _files(target) == before  # the old bundle is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary left behind


def test_inspect_cli_exit_codes(bundle_dir, tmp_path):
    samhw = [sys.executable, "-m", "sw.cli"]
    ok = subprocess.run(samhw + ["inspect", str(bundle_dir)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "all checksums valid" in ok.stdout and "attention" in ok.stdout
    root = _copy(bundle_dir, tmp_path)
    _first_tensor_file(root).write_bytes(b"")
    bad = subprocess.run(samhw + ["inspect", str(root)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "checksum mismatch" in bad.stderr


def test_readers_import_and_run_without_torch(bundle_dir):
    """sw.ref, hw and sim must work with torch absent: a finder that refuses torch stands in for that."""
    code = f"""
import numpy as np
import hw, sim
from sw.ref import arith, bundle, host, kernels, layers, run, summary
b = bundle.load_bundle({str(bundle_dir)!r})
layer = next(l for l in b.layers.values() if l.kind == "linear")
codes = np.zeros((2, layer.params["in_features"]), np.int64)
out = layers.run_layer(layer, codes)
assert out.shape == (2, layer.params["out_features"])
logits, iou = run.decode_masks(b, np.ones((1, 32, 8, 8)), np.array([[8.0, 8.0, 100.0, 90.0]]))
assert logits.shape == (1, 1, 32, 32) and iou.shape == (1,)
print(summary.summarize(b).splitlines()[0])
assert "torch" not in sys.modules
"""
    result = run_without_torch(code)
    assert result.returncode == 0, result.stderr


def test_export_refuses_a_missing_state(tmp_path):
    from sw.cli import main

    assert main(["export", "--quant-state", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b").exists()


def test_bundle_error_is_a_samhw_error():
    assert issubclass(BundleError, SamhwError)

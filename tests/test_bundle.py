"""Export bundle: byte-identical writes, validation of every failure mode (on disk and in each record),
the generated schema doc, torch-free readers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sw.errors import SamhwError
from sw.export.bundle import export_bundle
from sw.bundle import (AgqCodes, AttentionLayer, CagCodes, CodesOutput, ContractError, HluqCodes, LinearLayer,
                       UniformCodes)
from sw.bundle.store import MANIFEST, SCHEMA_VERSION, BundleError, load_bundle, write_bundle
from torchless import run_without_torch

ROOT = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def test_export_is_byte_identical_across_runs_and_round_trips(tiny_ahcptq, calib_items, tiny_sam_vit_bundle, tmp_path):
    again = export_bundle(tiny_ahcptq, calib_items[:2], tmp_path / "again", progress=False)
    assert _files(again) == _files(tiny_sam_vit_bundle)
    rewritten = write_bundle(load_bundle(tiny_sam_vit_bundle), tmp_path / "rewritten")
    assert _files(rewritten) == _files(tiny_sam_vit_bundle)


def test_bundle_carries_every_encoding(tiny_sam_vit_bundle):
    bundle = load_bundle(tiny_sam_vit_bundle)
    linear = bundle.of_kind(LinearLayer)
    assert {type(layer.input) for layer in linear} == {UniformCodes, CagCodes, HluqCodes}
    cag = next(layer.input for layer in linear if isinstance(layer.input, CagCodes))
    labels, perm = cag.channel_group, cag.permutation
    assert (labels[perm][1:] >= labels[perm][:-1]).all()  # groups contiguous in permuted order
    attn = bundle.of_kind(AttentionLayer)
    assert attn and all(isinstance(a.softmax, AgqCodes) and len(a.softmax.lut) == a.softmax.tau for a in attn)
    assert all(a.key_dim * a.heads == bundle.layer(f"{a.name}.q_proj").out_features for a in attn
               if f"{a.name}.q_proj" in bundle.layers)


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


def test_truncated_tensor_file_fails_its_checksum(tiny_sam_vit_bundle, tmp_path):
    root = _copy(tiny_sam_vit_bundle, tmp_path)
    path = _first_tensor_file(root)
    path.write_bytes(path.read_bytes()[:-40])
    _expect(root, str(path), "checksum mismatch")


def test_corrupt_tensor_file_with_matching_checksum_is_reported(tiny_sam_vit_bundle, tmp_path):
    import hashlib

    root = _copy(tiny_sam_vit_bundle, tmp_path)
    path = _first_tensor_file(root)
    path.write_bytes(b"\xff" * 64)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["layers"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / MANIFEST).write_text(json.dumps(manifest))
    _expect(root, str(path), "corrupt tensor file")


def test_wrong_schema_version_is_refused(tiny_sam_vit_bundle, tmp_path):
    root = _copy(tiny_sam_vit_bundle, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["schema_version"] = 99
    (root / MANIFEST).write_text(json.dumps(manifest))
    _expect(root, str(root / MANIFEST), "schema version 99 is not supported")


def test_shape_or_dtype_disagreeing_with_the_manifest_is_refused(tiny_sam_vit_bundle, tmp_path):
    root = _copy(tiny_sam_vit_bundle, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    spec = manifest["layers"][1]["tensors"]["weights.codes"]
    spec["shape"] = [spec["shape"][0] + 1] + spec["shape"][1:]
    (root / MANIFEST).write_text(json.dumps(manifest))
    _expect(root, "tensor 'weights.codes'", "manifest says")


def _edit_entry(tiny_sam_vit_bundle: Path, tmp_path: Path, select, edit) -> tuple[Path, str]:
    """A copy whose first layer entry that ``select`` accepts is changed by ``edit``; (root, name)."""
    root = _copy(tiny_sam_vit_bundle, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    entry = next(e for e in manifest["layers"] if select(e))
    edit(entry)
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root, entry["name"]


@pytest.mark.parametrize("edit,field,problem", [
    (lambda e: e["input"].pop("scale"), "input.scale", "missing"),
    (lambda e: e["input"].update(act_bits=12), "input.act_bits", "unsupported code width 12"),
    (lambda e: e["input"].update(zero_point=300), "input.zero_point", "values must lie in"),
    (lambda e: e["input"].update(format="log2"), "input.format", "must be one of"),
    (lambda e: e["weights"].update(weight_bits="4"), "weights.weight_bits", "must be int"),
    (lambda e: e.update(stride_y=2), "stride_y", "unknown field"),
])
def test_a_bad_field_is_named_with_its_file_and_layer(tiny_sam_vit_bundle, tmp_path, edit, field, problem):
    root, name = _edit_entry(tiny_sam_vit_bundle, tmp_path,
                             lambda e: e["kind"] == "linear" and e["input"]["format"] == "uniform", edit)
    _expect(root, str(root / MANIFEST), f"layer '{name}'", f"{field}:", problem)


def test_an_attention_with_mismatched_constants_is_refused(tiny_sam_vit_bundle, tmp_path):
    root, name = _edit_entry(tiny_sam_vit_bundle, tmp_path, lambda e: e["kind"] == "attention",
                             lambda e: e["softmax"].update(tau=3))
    _expect(root, f"layer '{name}'", "softmax.tau", "must be one of (1, 2, 4)")


def test_an_old_bundle_is_refused_naming_the_version_it_needs(tiny_sam_vit_bundle, tmp_path):
    root = _copy(tiny_sam_vit_bundle, tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["schema_version"] = 1
    (root / MANIFEST).write_text(json.dumps(manifest))
    _expect(root, "schema version 1 is not supported", f"reads version {SCHEMA_VERSION}", "samhw export")


def test_records_check_themselves_when_built():
    rng = np.random.default_rng(0)
    with pytest.raises(ContractError, match="zero_point: values must lie in"):
        UniformCodes(act_bits=4, scale=1.0, zero_point=16)
    with pytest.raises(ContractError, match="group_zero_point: values must lie in"):
        CagCodes(act_bits=4, channel_group=np.zeros(3, np.int64), permutation=np.arange(3),
                 group_scale=np.ones(1, np.float32), group_zero_point=np.array([16]))
    with pytest.raises(ContractError, match="permutation: is not a permutation"):
        CagCodes(act_bits=4, channel_group=np.zeros(3, np.int64), permutation=np.array([0, 0, 2]),
                 group_scale=np.ones(1, np.float32), group_zero_point=np.array([1]))
    with pytest.raises(ContractError, match="log_levels"):
        HluqCodes(act_bits=4, m=0.0, s_log=1.0, s_uni=1.0, log_levels=16)
    with pytest.raises(ContractError, match="lut: must be positive with lut"):
        AgqCodes(act_bits=4, tau=2, scale=1.0, max_shift=3, lut_frac_bits=15, lut=np.array([1, 2]))
    with pytest.raises(ContractError, match="shift: values must lie in \\[17, 78\\]"):
        CodesOutput(act_bits=4, consumers="x", multiplier=np.array([2**30]), shift=np.array([16]),
                    zero_point=np.array([0]))
    with pytest.raises(ContractError, match="multiplier: must be int64"):
        CodesOutput(act_bits=4, consumers="x", multiplier=np.array([2**30], np.int32), shift=np.array([20]),
                    zero_point=np.array([0]))
    import synthetic_layers

    layer = synthetic_layers.linear_layer(rng, "cag", 8, 2)
    with pytest.raises(ContractError, match="group_multiplier: has 3 entries, expected 4"):
        synthetic_layers.with_field(layer, "group_multiplier", np.ones(3, np.int64))
    with pytest.raises(ContractError, match="input.channel_group: has 8 channels, the layer has 6 inputs"):
        synthetic_layers.with_field(layer, "weights.codes", np.zeros((2, 6), np.uint8))


def test_schema_doc_is_generated_from_the_records():
    from sw.bundle.schema_doc import schema_markdown

    committed = (ROOT / "docs" / "bundle_schema.md").read_text()
    assert committed == schema_markdown(), "docs/bundle_schema.md is stale: python -m sw.bundle.schema_doc docs/bundle_schema.md"
    for name in ("LinearLayer", "ConvLayer", "AttentionLayer", "HostLayer", "CagCodes", "HluqCodes", "AgqCodes",
                 "HostOutput", "TinyVitStructure"):
        assert f": {name}\n" in committed or f"### {name}\n" in committed, name


def test_missing_tensor_file_and_missing_layer_are_named(tiny_sam_vit_bundle, tmp_path):
    root = _copy(tiny_sam_vit_bundle, tmp_path)
    path = _first_tensor_file(root)
    path.unlink()
    _expect(root, str(path), "is missing")

    root = _copy(tiny_sam_vit_bundle, tmp_path / "second")
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


def test_failed_export_leaves_no_half_written_bundle(tiny_ahcptq, calib_items, tiny_sam_vit_bundle, tmp_path, monkeypatch):
    target = _copy(tiny_sam_vit_bundle, tmp_path)
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


def test_inspect_cli_exit_codes(tiny_sam_vit_bundle, tmp_path):
    samhw = [sys.executable, "-m", "sw.cli"]
    ok = subprocess.run(samhw + ["inspect", str(tiny_sam_vit_bundle)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "all checksums valid" in ok.stdout and "attention" in ok.stdout
    root = _copy(tiny_sam_vit_bundle, tmp_path)
    _first_tensor_file(root).write_bytes(b"")
    bad = subprocess.run(samhw + ["inspect", str(root)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "checksum mismatch" in bad.stderr


def test_readers_import_and_run_without_torch(tiny_sam_vit_bundle):
    """sw.ref, hw and sim must work with torch absent: a finder that refuses torch stands in for that."""
    code = f"""
import numpy as np
import hw, sim
import sw.bundle, sw.bundle.schema_doc
from sw.bundle import LinearLayer, load_bundle
from sw.bundle.summary import summarize
from sw.ref import arith, host, kernels, layers, run
b = load_bundle({str(tiny_sam_vit_bundle)!r})
layer = b.of_kind(LinearLayer)[0]
codes = np.zeros((2, layer.in_features), np.int64)
out = layers.run_layer(layer, codes)
assert out.shape == (2, layer.out_features)
logits, iou = run.decode_masks(b, np.ones((1, 32, 8, 8)), np.array([[8.0, 8.0, 100.0, 90.0]]))
assert logits.shape == (1, 1, 32, 32) and iou.shape == (1,)
print(summarize(b).splitlines()[0])
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

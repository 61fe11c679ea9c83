"""The export bundle on disk: writing it atomically, reading it back with every check.

A bundle is a directory:

    manifest.json                 schema, model, recipe, bit widths, tool version, one entry per layer
    layers/NNN_<layer>.safetensors  that layer's integer tensors (no pickle)

Each layer entry names its file, the file's SHA-256, every tensor's dtype and shape, and the layer's
scalar parameters. Manifests are written with sorted keys and tensors by safetensors, whose layout
depends only on the tensors, so the same content always gives the same bytes.

Reading validates, in order: the manifest (present, JSON, schema and version), then per layer the
file (present, checksum, parseable) and each tensor (present, dtype, shape). Every failure is one
:class:`BundleError` line naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SamhwError

SCHEMA = "samhw-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LAYER_DIR = "layers"


class BundleError(SamhwError):
    """A bundle that cannot be used, with the file and the problem in one line."""


@dataclass
class Layer:
    """One manifest entry with its tensors (numpy arrays)."""

    name: str
    kind: str
    params: dict
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.tensors[key]


@dataclass
class Bundle:
    header: dict
    layers: dict[str, Layer]
    path: Path | None = None

    def layer(self, name: str) -> Layer:
        if name not in self.layers:
            where = self.path / MANIFEST if self.path else "bundle"
            raise BundleError(f"{where}: missing layer '{name}' (the bundle has {len(self.layers)} layers)")
        return self.layers[name]

    @property
    def weight_bits(self) -> int:
        return int(self.header["weight_bits"])

    @property
    def act_bits(self) -> int:
        return int(self.header["act_bits"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_name(index: int, name: str) -> str:
    return f"{LAYER_DIR}/{index:03d}_{name}.safetensors"


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, indent=1) + "\n"


def write_bundle(bundle: Bundle, out: str | Path) -> Path:
    """Write ``bundle`` to the directory ``out``; it appears complete or not at all."""
    from safetensors.numpy import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        (tmp / LAYER_DIR).mkdir()
        entries = []
        for index, layer in enumerate(bundle.layers.values()):
            rel = _file_name(index, layer.name)
            tensors = {k: np.ascontiguousarray(v) for k, v in layer.tensors.items()}
            save_file(tensors, str(tmp / rel))
            entries.append({
                "name": layer.name, "kind": layer.kind, "file": rel, "sha256": _sha256(tmp / rel),
                "params": layer.params,
                "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(tensors.items())},
            })
        manifest = {**bundle.header, "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "layers": entries}
        (tmp / MANIFEST).write_text(_json(manifest))
        if out.exists():
            # A directory cannot be renamed over a non-empty one: move the old one aside first.
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "bundle")
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.path = out
    return out


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory not found")
    if not path.is_file():
        raise BundleError(f"{path}: manifest not found (not a samhw bundle?)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise BundleError(f"{path}: not a samhw bundle manifest (schema is {manifest.get('schema')!r})"
                          if isinstance(manifest, dict) else f"{path}: manifest is not a JSON object")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{path}: bundle schema version {manifest.get('schema_version')} is not supported "
                          f"(this tool reads version {SCHEMA_VERSION})")
    if not isinstance(manifest.get("layers"), list):
        raise BundleError(f"{path}: manifest has no layer list")
    return manifest


def _read_layer(root: Path, entry: dict) -> Layer:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        name, rel, digest, specs = entry["name"], entry["file"], entry["sha256"], entry["tensors"]
    except (KeyError, TypeError):
        raise BundleError(f"{root / MANIFEST}: malformed layer entry {str(entry)[:80]}") from None
    path = root / rel
    if not path.is_file():
        raise BundleError(f"{path}: tensor file of layer '{name}' is missing")
    if _sha256(path) != digest:
        raise BundleError(f"{path}: checksum mismatch (file changed or truncated since export)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{path}: corrupt tensor file ({str(exc).splitlines()[0]})") from None
    for key, spec in specs.items():
        if key not in tensors:
            raise BundleError(f"{path}: tensor '{key}' of layer '{name}' is missing")
        got = tensors[key]
        if str(got.dtype) != spec["dtype"] or list(got.shape) != list(spec["shape"]):
            raise BundleError(f"{path}: tensor '{key}' is {got.dtype}{list(got.shape)}, manifest says "
                              f"{spec['dtype']}{list(spec['shape'])}")
    extra = sorted(set(tensors) - set(specs))
    if extra:
        raise BundleError(f"{path}: tensors not in the manifest: {', '.join(extra)}")
    return Layer(name, entry["kind"], entry.get("params", {}), tensors)


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle directory (see the module docstring for the checks)."""
    root = Path(path)
    manifest = _read_manifest(root)
    header = {k: v for k, v in manifest.items() if k not in ("layers", "schema", "schema_version")}
    layers = {}
    for entry in manifest["layers"]:
        layer = _read_layer(root, entry)
        if layer.name in layers:
            raise BundleError(f"{root / MANIFEST}: layer '{layer.name}' is listed twice")
        layers[layer.name] = layer
    return Bundle(header, layers, root)

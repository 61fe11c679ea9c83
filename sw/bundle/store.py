"""The bundle on disk: written atomically, read back with every check.

    manifest.json                    schema, version, header, one entry per layer
    layers/NNN_<layer>.safetensors   that layer's tensors (no pickle), keyed by dotted field path

Each layer entry is its record's value fields (``record.encode``) plus the tensor file's name, SHA-256,
and every tensor's dtype and shape. Manifests are written with sorted keys and tensors by safetensors,
whose layout depends only on the tensors, so the same content always gives the same bytes.

Reading checks, in order: the manifest (present, JSON, schema and version), then per layer the file
(present, checksum, parseable), each tensor (present, dtype, shape, none extra) and last the record
itself (every field present and of its type, and the record's own consistency checks). Every failure
is one :class:`BundleError` line naming the file, the layer and the field.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..atomic_file import atomic_directory
from ..errors import SamhwError
from .host import HostLayer
from .layers import AttentionLayer, ConvLayer, GemmLayer, Layer, LinearLayer
from .record import ContractError, Record, decode, decode_tagged, encode, value

SCHEMA = "samhw-bundle"
SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
LAYER_DIR = "layers"
LAYER_KINDS = (LinearLayer, ConvLayer, AttentionLayer, HostLayer)
_ENTRY_KEYS = ("file", "sha256", "tensors")

L = TypeVar("L", bound=Layer)


class BundleError(SamhwError):
    """A bundle that cannot be used, with the file, layer, field and problem in one line."""


@dataclass(frozen=True, eq=False)
class BundleHeader(Record):
    model: str = value("model name")
    recipe: str = value("quantization recipe")
    weight_bits: int = value("weight code width of the recipe")
    act_bits: int = value("activation code width of the recipe")
    host_bits: int = value("width of host codes")
    tool: str = value("samhw version that wrote the bundle")
    calibration_images: int = value("images used for calibration and the host-code ranges")
    quant_config: dict = value("the full QuantConfig, for the record")


@dataclass
class Bundle:
    header: BundleHeader
    layers: dict[str, Layer]
    path: Path | None = None

    @property
    def where(self) -> str:
        return str(self.path / MANIFEST) if self.path else "bundle"

    def layer(self, name: str, kind: type[L] | tuple[type, ...] = Layer) -> L:
        """The layer ``name``, which must be of ``kind`` (one line naming the bundle if not)."""
        if name not in self.layers:
            raise BundleError(f"{self.where}: missing layer '{name}' (the bundle has {len(self.layers)} layers)")
        layer = self.layers[name]
        if not isinstance(layer, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            raise BundleError(f"{self.where}: layer '{name}' is a {layer.TAG} layer, expected "
                              f"{' or '.join(k.TAG or k.__name__ for k in kinds)}")
        return layer

    def gemm(self, name: str) -> GemmLayer:
        return self.layer(name, (LinearLayer, ConvLayer))

    def attention(self, name: str) -> AttentionLayer:
        return self.layer(name, AttentionLayer)

    @property
    def host(self) -> HostLayer:
        from .host import HOST_LAYER

        return self.layer(HOST_LAYER, HostLayer)

    def of_kind(self, kind: type[L]) -> list[L]:
        return [layer for layer in self.layers.values() if isinstance(layer, kind)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_name(index: int, name: str) -> str:
    return f"{LAYER_DIR}/{index:03d}_{name}.safetensors"


def _json(data) -> str:
    return json.dumps(data, sort_keys=True, indent=1) + "\n"


def write_bundle(bundle: Bundle, out: str | Path) -> Path:
    """Write ``bundle`` to the directory ``out``; it appears complete or not at all."""
    from safetensors.numpy import save_file

    out = Path(out)
    with atomic_directory(out) as tmp:
        (tmp / LAYER_DIR).mkdir()
        entries = []
        for index, layer in enumerate(bundle.layers.values()):
            rel = _file_name(index, layer.name)
            tensors: dict[str, np.ndarray] = {}
            entry = encode(layer, tensors)
            save_file(tensors, str(tmp / rel))
            entry.update(file=rel, sha256=_sha256(tmp / rel),
                         tensors={k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(tensors.items())})
            entries.append(entry)
        manifest = {**encode(bundle.header, {}), "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "layers": entries}
        (tmp / MANIFEST).write_text(_json(manifest))
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
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: manifest is not a JSON object")
    if manifest.get("schema") != SCHEMA:
        raise BundleError(f"{path}: not a samhw bundle manifest (schema is {manifest.get('schema')!r})")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(f"{path}: bundle schema version {manifest.get('schema_version')} is not supported: this "
                          f"tool reads version {SCHEMA_VERSION} (export the bundle again with 'samhw export')")
    if not isinstance(manifest.get("layers"), list):
        raise BundleError(f"{path}: manifest has no layer list")
    return manifest


def _read_tensors(root: Path, entry: dict) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    name, rel, digest, specs = entry["name"], entry["file"], entry["sha256"], entry["tensors"]
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
    return tensors


def _read_layer(root: Path, entry) -> Layer:
    where = root / MANIFEST
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
            or not all(isinstance(entry.get(k), (str, dict)) for k in _ENTRY_KEYS):
        raise BundleError(f"{where}: malformed layer entry {str(entry)[:80]}")
    tensors = _read_tensors(root, entry)
    record = {k: v for k, v in entry.items() if k not in _ENTRY_KEYS}
    try:
        return decode_tagged(LAYER_KINDS, record, tensors, "")
    except ContractError as exc:
        raise BundleError(f"{where}: layer '{entry['name']}': {exc}") from None


def load_bundle(path: str | Path) -> Bundle:
    """Read and validate a bundle directory (see the module docstring for the checks)."""
    root = Path(path)
    manifest = _read_manifest(root)
    header_data = {k: v for k, v in manifest.items() if k not in ("layers", "schema", "schema_version")}
    try:
        header = decode(BundleHeader, header_data, {})
    except ContractError as exc:
        raise BundleError(f"{root / MANIFEST}: header field {exc}") from None
    layers: dict[str, Layer] = {}
    for entry in manifest["layers"]:
        layer = _read_layer(root, entry)
        if layer.name in layers:
            raise BundleError(f"{root / MANIFEST}: layer '{layer.name}' is listed twice")
        layers[layer.name] = layer
    return Bundle(header, layers, root)

"""A program on disk: written atomically and byte-identically, read back with every check.

    PROGRAM/manifest.json   sorted-key JSON: schema, core config and its digest, the bundle's identity,
                            memory sizes, and per invocation its layer, kind, op, shapes, runs, counts
                            and tensor regions
    PROGRAM/program.npz     ``image`` (the static external-memory image, uint8) and, per invocation i,
                            part p and unit u, ``iNNNN.pP.u``: its 128-bit instructions as uint8 [n, 16]

Reading checks the manifest, the arrays' checksum, that every stream holds only its unit's opcodes and
fits the instruction RAM, and that every region lies in the tensor area; ``load_program`` also refuses,
in one line naming the difference, a program compiled for another core or from another bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from hw.core.config import CoreConfig, CoreConfigError
from hw.core.isa import IsaError
from hw.core.streams import UNITS, Streams
from sw.atomic_file import atomic_directory
from sw.errors import SamhwError

from .invocation import Invocation, InvocationSpec, OutputLookup
from .program import Program
from .regions import Region

SCHEMA = "samhw-program"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "program.npz"
INSTRUCTION_BYTES = 16
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)   # fixed, so equal programs are equal bytes


class ProgramError(SamhwError):
    """A program directory that cannot be used, in one line."""


def is_program(path: str | Path) -> bool:
    """Whether ``path`` is a program directory (its manifest names the program schema)."""
    manifest = Path(path) / MANIFEST
    try:
        return json.loads(manifest.read_text()).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def _stream_key(index: int, part: int, unit: str) -> str:
    return f"i{index:04d}.p{part}.{unit}"


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def _instructions(words: tuple[int, ...]) -> np.ndarray:
    data = b"".join(int(w).to_bytes(INSTRUCTION_BYTES, "little") for w in words)
    return np.frombuffer(data, np.uint8).reshape(-1, INSTRUCTION_BYTES)


def _manifest_entry(inv: Invocation) -> dict:
    spec = inv.spec
    return {"key": spec.key, "layer": spec.layer, "kind": spec.kind, "op": spec.op,
            "shapes": [[n, list(s)] for n, s in spec.shapes], "parts": len(inv.parts),
            "instructions": inv.instruction_counts(), "gemms": inv.gemms, "macs": inv.macs, "slots": inv.slots,
            "static": inv.static, "inputs": [r.to_json() for r in inv.inputs.values()],
            "outputs": [r.to_json() for r in inv.outputs.values()]} | (
            {"lookup": spec.lookup.to_json()} if spec.lookup else {})


def write_program(program: Program, out: str | Path) -> Path:
    """Write ``program`` to the directory ``out``; it appears complete or not at all."""
    out = Path(out)
    with atomic_directory(out) as tmp:
        arrays = {"image": program.image}
        for i, inv in enumerate(program.invocations):
            for p, streams in enumerate(inv.parts):
                for unit in UNITS:
                    arrays[_stream_key(i, p, unit)] = _instructions(getattr(streams, unit))
        _write_npz(tmp / ARRAYS, arrays)
        cfg = program.config
        manifest = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "core": cfg.to_dict(),
                    "core_digest": cfg.digest, "bundle": program.bundle, "static_words": program.static_words,
                    "tensor_words": program.tensor_words, "total_words": program.total_words,
                    "arrays": {"file": ARRAYS, "sha256": hashlib.sha256((tmp / ARRAYS).read_bytes()).hexdigest()},
                    "invocations": [_manifest_entry(inv) for inv in program.invocations]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n")
    return out


def _config_difference(a: CoreConfig, b: CoreConfig) -> str:
    da, db = a.to_dict(), b.to_dict()
    diff = [f"{k} {da[k]} vs {db[k]}" for k in sorted(da) if da[k] != db[k]]
    return ", ".join(diff[:3]) + (" ..." if len(diff) > 3 else "")


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        raise ProgramError(f"{path}: manifest not found (not a samhw program?)")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProgramError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise ProgramError(f"{path}: not a samhw program manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ProgramError(f"{path}: program schema version {manifest.get('schema_version')} is not supported: this "
                           f"tool reads version {SCHEMA_VERSION} (compile again with 'samhw compile')")
    return manifest


def load_program(path: str | Path, config: CoreConfig | None = None, bundle=None) -> Program:
    """Read and check a program directory; with ``config`` / ``bundle``, also that it was compiled for
    that core and from that bundle."""
    root = Path(path)
    manifest = _read_manifest(root)
    where = root / MANIFEST
    try:
        stored = CoreConfig.from_dict(manifest["core"], f"{where}: core")
        entries = manifest["invocations"]
        arrays_file, digest = manifest["arrays"]["file"], manifest["arrays"]["sha256"]
        static_words, tensor_words = int(manifest["static_words"]), int(manifest["tensor_words"])
    except (KeyError, TypeError) as exc:
        raise ProgramError(f"{where}: manifest field missing or malformed ({exc})") from None
    except CoreConfigError as exc:
        raise ProgramError(str(exc)) from None
    if stored.digest != manifest.get("core_digest"):
        raise ProgramError(f"{where}: core digest {manifest.get('core_digest')} does not match its config "
                           f"({stored.digest})")
    if config is not None and config.digest != stored.digest:
        raise ProgramError(f"{root}: compiled for core {stored.digest}, not this core {config.digest} "
                           f"({_config_difference(stored, config)})")
    if bundle is not None:
        check_bundle(manifest, bundle, root)
    arrays_path = root / arrays_file
    if not arrays_path.is_file():
        raise ProgramError(f"{arrays_path}: program arrays are missing")
    if hashlib.sha256(arrays_path.read_bytes()).hexdigest() != digest:
        raise ProgramError(f"{arrays_path}: checksum mismatch (file changed or truncated since compile)")
    with np.load(arrays_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    image = arrays.get("image")
    if image is None or image.size != static_words * stored.bus_bytes:
        raise ProgramError(f"{arrays_path}: static image is not {static_words} words")
    program = Program(stored, manifest.get("bundle", {}), image, tensor_words)
    for i, entry in enumerate(entries):
        program.invocations.append(_read_invocation(i, entry, arrays, stored, static_words, tensor_words, where))
    return program


def _read_invocation(i: int, entry: dict, arrays: dict, config: CoreConfig, static_words: int, tensor_words: int,
                     where: Path) -> Invocation:
    try:
        lookup = OutputLookup.from_json(entry["lookup"]) if entry.get("lookup") else None
        spec = InvocationSpec(entry["layer"], entry["kind"], entry["op"],
                              tuple((n, tuple(s)) for n, s in entry["shapes"]), lookup)
        parts = []
        for p in range(int(entry["parts"])):
            words = {u: tuple(int.from_bytes(row.tobytes(), "little") for row in arrays[_stream_key(i, p, u)])
                     for u in UNITS}
            streams = Streams(words["load"], words["compute"], words["store"])
            streams.check(config)
            parts.append(streams)
        inputs = {r["name"]: Region.from_json(r) for r in entry["inputs"]}
        outputs = {r["name"]: Region.from_json(r) for r in entry["outputs"]}
        inv = Invocation(spec, parts, inputs, outputs, dict(entry["static"]), int(entry["macs"]), int(entry["slots"]),
                         int(entry["gemms"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProgramError(f"{where}: invocation {i} ({entry.get('key', '?') if isinstance(entry, dict) else '?'}): "
                           f"{exc if isinstance(exc, IsaError) else f'malformed ({exc})'}") from None
    for region in list(inv.inputs.values()) + list(inv.outputs.values()):
        if region.base < static_words or region.base + region.words > static_words + tensor_words:
            raise ProgramError(f"{where}: invocation {i} ({inv.key}): region '{region.name}' lies outside the "
                               f"tensor area")
    return inv


def check_bundle(manifest: dict, bundle, root: Path) -> None:
    """One line naming the difference when the program was not compiled from ``bundle``."""
    from .model import bundle_identity

    mine, theirs = manifest.get("bundle", {}), bundle_identity(bundle)
    for key in ("model", "recipe", "weight_bits", "act_bits", "manifest_sha256"):
        if mine.get(key) != theirs.get(key):
            raise ProgramError(f"{root}: compiled from a bundle with {key} {mine.get(key)}, this bundle has "
                               f"{theirs.get(key)}")
    for entry in manifest.get("invocations", []):
        layer = bundle.layers.get(entry.get("layer"))
        if layer is None or layer.TAG != entry.get("kind"):
            raise ProgramError(f"{root}: invocation of {entry.get('kind')} layer '{entry.get('layer')}', which this "
                               f"bundle does not have")


def summarize(program: Program, path: str | Path = "program") -> str:
    """Human-readable summary (``samhw inspect PROGRAM``)."""
    cfg, b = program.config, program.bundle
    total = {u: 0 for u in UNITS}
    for inv in program.invocations:
        for u, n in inv.instruction_counts().items():
            total[u] += n
    lines = [f"{path}: program for core {cfg.digest} ({cfg.rows}x{cfg.cols} PEs, A{cfg.act_bits}W{cfg.weight_bits}), "
             f"bundle {b.get('model', '?')} {b.get('recipe', '?')} W{b.get('weight_bits', '?')}A{b.get('act_bits', '?')}, "
             f"{len(program.invocations)} invocations, {sum(total.values())} instructions "
             f"(load {total['load']}, compute {total['compute']}, store {total['store']}), static "
             f"{program.static_words} words + tensor area {program.tensor_words} words, all checks passed"]
    width = max((len(inv.key) for inv in program.invocations), default=0)
    for inv in program.invocations:
        c = inv.instruction_counts()
        lines.append(f"  {inv.key:<{width}}  {inv.gemms:>4} GEMMs  {len(inv.parts)} run(s)  "
                     f"{'double' if inv.slots == 2 else 'single'}-buffered  {inv.macs / 1e6:9.1f} MMAC  "
                     f"instr {c['load']}/{c['compute']}/{c['store']}")
    return "\n".join(lines)

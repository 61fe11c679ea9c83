"""Jobs -> instruction streams: buffer halves, token flags and the split into core runs.

A job is one GEMM instruction with the buffer contents it needs (``Fill``: what to load into the ACT,
WGT or constant-slot area, with a ``key`` naming the content) and the OUT rows it leaves (``Copy``
back to external memory). Double buffering, VTA style, with ``slots`` = 2 halves per area:

- a fill whose key equals the area's current content is skipped (weights stay while rows stream);
  a new content goes to the other half, so the half a GEMM still reads is never overwritten;
- the LOAD group of job i (i >= slots) first waits for a "freed" token, which the GEMM of job i - slots
  sent, and its last instruction sends "loaded"; an empty group is one SYNC carrying the flags;
- GEMM i waits for "loaded" and, for i >= slots, for "stored" (the STORE of job i - slots has emptied
  its OUT half), and sends "freed" and "computed"; the STORE group waits "computed", sends "stored".

Every area alternates between its halves at distinct jobs, so a half is refilled only after the GEMMs
that read its previous content have freed their slot (hw/fsim checks exactly this per word).
Descriptors sit at the start of PARAM, loaded once per run. When a stream would outgrow the
instruction RAM, the jobs continue in a new run of the core (a "part"), which starts from scratch; a
softmax tile's jobs (its to_store GEMMs and its SOFTMAX) stay in one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.core.config import CoreConfig
from hw.core.isa import Buffer, Gemm, Instruction, IsaError, Opcode, Softmax, Transfer
from hw.core.streams import Streams
from hw.fsim.layout import Descriptor, out_slots_per_word, pack_descriptor

from .errors import CompileError

MAX_ROW_WORDS = (1 << 12) - 1      # Transfer.row_words
MAX_ROWS = (1 << 16) - 1           # Transfer.rows


@dataclass(frozen=True)
class Copy:
    """One transfer: ``rows`` rows of ``row_words`` words, external side ``region`` + ``offset`` (+ r *
    ext_stride), buffer side the area's half + ``buf_offset`` (+ r * buf_stride)."""

    region: str
    offset: int
    rows: int
    row_words: int
    ext_stride: int
    buf_stride: int
    buf_offset: int = 0


def contiguous(region: str, offset: int, words: int, buf_offset: int = 0) -> list[Copy]:
    """Copies of ``words`` consecutive words, within the Transfer field widths."""
    if words <= MAX_ROW_WORDS:
        return [Copy(region, offset, 1, words, 0, 0, buf_offset)] if words else []
    width = MAX_ROW_WORDS
    rows = words // width
    out = []
    while rows:
        take = min(rows, MAX_ROWS)
        out.append(Copy(region, offset, take, width, width, width, buf_offset))
        offset, buf_offset, rows = offset + take * width, buf_offset + take * width, rows - take
    rest = words % width
    if rest:
        out.append(Copy(region, offset, 1, rest, 0, 0, buf_offset))
    return out


@dataclass(frozen=True)
class Fill:
    area: str                  # act | wgt | slots
    key: tuple
    copies: tuple[Copy, ...]


@dataclass(frozen=True)
class Job:
    fills: tuple[Fill, ...]
    desc: Descriptor
    act_offset: int            # codes from the ACT half's start
    wgt_offset: int            # vectors from the WGT half's start
    col_offset: int            # slots from the slot half's start
    n_batch: int
    n_rb: int
    stores: tuple[Copy, ...]   # buf_offset from the OUT half's start
    softmax: dict | None = None   # a SOFTMAX after the GEMM (``isa.Softmax`` fields but out_base and flags),
                                  # writing the OUT half the stores read; it, not the GEMM, signals "computed";
                                  # with ``bias_offset`` (PARAM words from the slot half's start: bias_addr) and
                                  # ``bias_key`` (its table) it takes a grid bias, loading the table when the
                                  # path holds another, and signals "freed" too
    out_base: int | None = None   # the GEMM's own out_base (a to_store GEMM's first store row), not the half's


def changed_fills(job: Job, keys: dict) -> list[Fill]:
    """The job's fills that change their area's content (``keys``: area -> the key it holds, updated): a
    fill whose key equals its area's is skipped, so weights stay while rows stream."""
    changed = []
    for fill in job.fills:
        if keys.get(fill.area) != fill.key:
            keys[fill.area] = fill.key
            changed.append(fill)
    return changed


@dataclass
class Areas:
    """Word ranges of the buffer halves for ``slots`` slots, with descriptors taking ``desc_words`` of PARAM."""

    config: CoreConfig
    slots: int
    desc_words: int

    def half_words(self, area: str) -> int:
        cfg = self.config
        total = {"act": cfg.act_words, "wgt": cfg.wgt_words, "out": cfg.out_words,
                 "slots": cfg.param_words - self.desc_words}[area]
        return total // self.slots

    def base_word(self, area: str, half: int) -> int:
        return (self.desc_words if area == "slots" else 0) + half * self.half_words(area)


@dataclass
class _Part:
    load: list = field(default_factory=list)
    compute: list = field(default_factory=list)
    store: list = field(default_factory=list)


_BUFFER = {"act": Buffer.ACT, "wgt": Buffer.WGT, "slots": Buffer.PARAM}


def descriptor_table(jobs: list[Job], bus_bits: int) -> tuple[dict[Descriptor, int], list[Descriptor]]:
    """PARAM word of each distinct descriptor, in first-use order."""
    addr, order, at = {}, [], 0
    for job in jobs:
        if job.desc not in addr:
            addr[job.desc] = at
            order.append(job.desc)
            at += job.desc.words(bus_bits)
    return addr, order


def descriptor_image(order: list[Descriptor], bus_bits: int) -> np.ndarray:
    return np.concatenate([pack_descriptor(d, bus_bits) for d in order])


def _transfer(op: Opcode, buffer: Buffer, buf_addr: int, ext_addr: int, copy: Copy, flags: dict) -> Transfer:
    return Transfer(opcode=op, buffer=buffer, buf_addr=buf_addr, ext_addr=ext_addr, rows=copy.rows,
                    row_words=copy.row_words, ext_stride=copy.ext_stride, buf_stride=copy.buf_stride,
                    **flags)


def _flag_group(instrs: list[dict], first: dict, last: dict) -> list[dict]:
    if not instrs:
        instrs = [{"op": Opcode.SYNC}]
    instrs[0] = {**instrs[0], **first}
    instrs[-1] = {**instrs[-1], **last}
    return instrs


FLAGS = ("wait_prev", "wait_next", "signal_prev", "signal_next")


def _build(spec: dict) -> Instruction | Transfer | Gemm | Softmax:
    flags = {f: int(spec.get(f, 0)) for f in FLAGS}
    if spec["op"] == Opcode.SYNC:
        return Instruction(Opcode.SYNC, **flags)
    if spec["op"] == Opcode.GEMM:
        return Gemm(opcode=Opcode.GEMM, **flags, **spec["gemm"])
    if spec["op"] == Opcode.SOFTMAX:
        return Softmax(opcode=Opcode.SOFTMAX, **flags, **spec["softmax"])
    return _transfer(spec["op"], spec["buffer"], spec["buf_addr"], spec["ext_addr"], spec["copy"], flags)


def _run_groups(jobs: list[Job]):
    """Jobs that one run of the core must hold together: a softmax tile's to_store GEMMs with the job of its
    SOFTMAX (the path's store does not outlive a run), every other job alone."""
    group = []
    for job in jobs:
        group.append(job)
        if job.softmax is not None or not job.desc.loops.to_store:
            yield group
            group = []
    if group:
        yield group


def emit_streams(config: CoreConfig, jobs: list[Job], slots: int, bases: dict[str, int], desc_region: str,
                 where: str) -> list[Streams]:
    """The runs ("parts") of the core that execute ``jobs`` in order; ``bases``: each region's first word."""
    desc_addr, order = descriptor_table(jobs, config.bus_bits)
    desc_words = sum(d.words(config.bus_bits) for d in order)
    areas = Areas(config, slots, desc_words)
    spw = config.slots_per_param_word
    parts: list[_Part] = []
    state: dict = {}

    def new_part():
        parts.append(_Part())
        state.clear()
        state.update(index=0, key={}, half={})

    def job_instructions(job: Job):
        i = state["index"]
        loads = []
        if i == 0:
            for copy in contiguous(desc_region, 0, desc_words):
                loads.append({"op": Opcode.LOAD, "buffer": Buffer.PARAM, "buf_addr": copy.buf_offset,
                              "ext_addr": bases[desc_region] + copy.offset, "copy": copy})
        halves = dict(state["half"])
        keys = dict(state["key"])
        for fill in changed_fills(job, keys):
            halves[fill.area] = (halves.get(fill.area, -1) + 1) % slots
            base = areas.base_word(fill.area, halves[fill.area])
            for copy in fill.copies:
                end = copy.buf_offset + (copy.rows - 1) * copy.buf_stride + copy.row_words
                if end > areas.half_words(fill.area):
                    raise CompileError(f"{where}: a {fill.area} fill of {end} words overflows its "
                                       f"{areas.half_words(fill.area)}-word area")
                loads.append({"op": Opcode.LOAD, "buffer": _BUFFER[fill.area], "buf_addr": base + copy.buf_offset,
                              "ext_addr": bases[copy.region] + copy.offset, "copy": copy})
        loads = _flag_group(loads, {"wait_next": int(i >= slots)}, {"signal_next": 1})
        out_half = i % slots
        act = areas.base_word("act", halves.get("act", 0)) * config.codes_per_act_word + job.act_offset
        wgt = areas.base_word("wgt", halves.get("wgt", 0)) * config.vectors_per_wgt_word + job.wgt_offset
        col = areas.base_word("slots", halves.get("slots", 0)) * spw + job.col_offset
        out_unit = out_slots_per_word(config, job.desc.loops)
        out_base = areas.base_word("out", out_half) * out_unit if job.out_base is None else job.out_base
        # a SOFTMAX that copies its bias table from the slot area frees the area itself, after the copy
        bias = job.softmax is not None and "bias_offset" in job.softmax
        gemm = {"op": Opcode.GEMM, "wait_prev": 1, "wait_next": int(i >= slots), "signal_prev": int(not bias),
                "signal_next": int(job.softmax is None),
                "gemm": dict(desc_addr=desc_addr[job.desc], act_base=act, wgt_base=wgt, out_base=out_base, col_base=col,
                             n_batch=job.n_batch, n_rb=job.n_rb)}
        compute = [gemm]
        if job.softmax is not None:
            step = dict(job.softmax, out_base=areas.base_word("out", out_half))
            if bias:      # the path keeps a table until a SOFTMAX of this run loads another
                step["bias_addr"] = areas.base_word("slots", halves["slots"]) + step.pop("bias_offset")
                table = step.pop("bias_key")
                step["bias_load"] = int(keys.get("bias") != table)
                keys["bias"] = table
            compute.append({"op": Opcode.SOFTMAX, "signal_prev": int(bias), "signal_next": 1, "softmax": step})
        stores = [{"op": Opcode.STORE, "buffer": Buffer.OUT,
                   "buf_addr": areas.base_word("out", out_half) + c.buf_offset, "ext_addr": bases[c.region] + c.offset,
                   "copy": c} for c in job.stores]
        stores = _flag_group(stores, {"wait_prev": 1}, {"signal_prev": 1})
        return loads, compute, stores, halves, keys

    def fits(part: _Part, add) -> bool:
        return all(len(getattr(part, unit)) + len(extra) + 1 <= config.prog_words
                   for unit, extra in zip(("load", "compute", "store"), add))

    def group_instructions(group: list[Job]):
        """The group's instructions per unit, with ``state`` advanced past it."""
        out = ([], [], [])
        for job in group:
            add = job_instructions(job)
            for unit, extra in zip(out, add[:3]):
                unit += extra
            state.update(index=state["index"] + 1, half=add[3], key=add[4])
        return out

    new_part()
    for group in _run_groups(jobs):
        fresh = state["index"] == 0
        add = group_instructions(group)
        if not fits(parts[-1], add):      # the new run starts from scratch: its instructions are recomputed
            if fresh:
                what = "one job" if len(group) == 1 else f"one softmax tile ({len(group)} jobs)"
                raise CompileError(f"{where}: {what} needs {len(add[0]) + 1} load and {len(add[1]) + 1} compute "
                                   f"instructions, the core holds {config.prog_words} (prog_words)")
            new_part()
            add = group_instructions(group)
        part = parts[-1]
        part.load += add[0]
        part.compute += add[1]
        part.store += add[2]
    try:
        return [Streams.assemble([_build(s) for s in p.load], [_build(s) for s in p.compute],
                                 [_build(s) for s in p.store]) for p in parts]
    except IsaError as exc:
        raise CompileError(f"{where}: {exc}") from None

"""Tensor regions of external memory: where a compiled invocation expects its inputs and leaves its
outputs, and how a numpy tensor maps onto those words. A region is data (``to_json``/``from_json``),
so a runtime that loads a program can pack and unpack without the compiler.

Layouts (every one starts at ``base`` and occupies ``words`` words):

    rows      row operands: tensor -> [items, M, J] -> per item [J][M_pad] codes (rows consecutive,
              channels in ``channel_order``), ``item_words`` apart; rows past M hold ``pad_codes[j]``
    vectors   column operands: tensor -> [items, J, N] -> per item, per block of ``cols`` columns,
              J_pad vectors of ``cols`` codes; columns past N hold ``pad_codes[n]``; with ``key_slots``,
              column n goes to column key_slots[n] of ``n_slots`` (the others hold their pad codes)
    conv      a conv input [B, C, H, W] -> per image, per channel a plane of H_pad rows of
              ``row_len`` codes: the padded image row (zero-point code outside the image) split into
              ``stride`` column phases of ``phase_len`` codes; channels past C hold the zero point
    relative  SAM ViT's relative-position terms of the queries of a ``rows`` region's tensor (``source``):
              the host computes each query's height and width terms from its codes
              (``sw.ref.log_softmax.RelativePosition``); per item, per block of ``rows`` queries (rows past
              M zero), the block's pairs as ``hw.fsim.layout.pack_relative_terms`` lays them out, ``pitch``
              pairs a query (the grid's ``side``, then zeros), ``block_words`` words a block
    out_rows  results: per item [m_pad] row vectors of ``n_ob`` blocks of ``cols`` elements
              (``words_per_row`` words per block) -> [items, M, N] -> tensor, m_pad >= M the rows kept
              per item; with ``rows_per_word`` P > 1 (a packed GEMM's), per item and block [m_pad / P]
              words of P row vectors each; with ``key_slots``, column n of the tensor is column key_slots[n]

``axes``/``logical`` say how the tensor becomes the layout's 3-d array: transpose by ``axes``, then
reshape to ``logical`` (and the reverse for outputs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from hw.core.config import RELATIVE_TERM_BITS
from hw.fsim.layout import pack_codes, pack_relative_terms, unpack_out_rows
from sw.ref.log_softmax import RelativePosition


class RegionError(ValueError):
    """A tensor that does not match its region's shape or code range."""


def _to_logical(x: np.ndarray, shape: tuple, axes: tuple, logical: tuple, name: str) -> np.ndarray:
    x = np.asarray(x)
    if tuple(x.shape) != tuple(shape):
        raise RegionError(f"region '{name}' takes a tensor of shape {list(shape)}, got {list(x.shape)}")
    return x.transpose(axes).reshape(logical)


@dataclass(frozen=True)
class Region:
    name: str
    kind: str                  # rows | vectors | conv | out_rows
    base: int                  # first word in external memory
    words: int
    shape: tuple               # the tensor's shape
    bits: int                  # code or element width in memory
    axes: tuple = ()
    logical: tuple = ()
    params: dict = field(default_factory=dict)

    # ---- data ------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        out = asdict(self)
        out.update(shape=list(self.shape), axes=list(self.axes), logical=list(self.logical))
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Region":
        return cls(data["name"], data["kind"], int(data["base"]), int(data["words"]), tuple(data["shape"]),
                   int(data["bits"]), tuple(data["axes"]), tuple(data["logical"]), dict(data["params"]))

    @property
    def source(self) -> str:
        """The input tensor this region is packed from (its own name, or the tensor it derives from)."""
        return self.params.get("source", self.name)

    @property
    def rows_per_word(self) -> int:
        """Output rows one word holds (a packed GEMM's out_rows region), else 1."""
        return self.params.get("rows_per_word", 1)

    def moved(self, base: int) -> "Region":
        return Region(self.name, self.kind, base, self.words, self.shape, self.bits, self.axes, self.logical,
                      self.params)

    # ---- tensor <-> words ------------------------------------------------------------------------
    def pack(self, tensor: np.ndarray, bus_bits: int) -> np.ndarray:
        """The region's bytes ([words * bus_bytes]) holding ``tensor`` (an input region)."""
        packer = {"rows": self._pack_rows, "vectors": self._pack_vectors, "conv": self._pack_conv,
                  "relative": self._pack_relative}.get(self.kind)
        if packer is None:
            raise RegionError(f"region '{self.name}' is an output ({self.kind}); it is read, not written")
        codes = np.asarray(tensor)
        if codes.size and (codes.min() < 0 or codes.max() >= 1 << self.params["code_bits"]):
            raise RegionError(f"region '{self.name}' holds {self.params['code_bits']}-bit codes, got values "
                              f"{int(codes.min())}..{int(codes.max())}")
        data = packer(codes, bus_bits)
        out = np.zeros(self.words * bus_bits // 8, np.uint8)
        out[:data.size] = data
        return out

    def read(self, memory: np.ndarray, bus_bits: int) -> np.ndarray:
        """The tensor an output region holds in ``memory``."""
        if self.kind != "out_rows":
            raise RegionError(f"region '{self.name}' is an input ({self.kind}), not an output")
        bb = bus_bits // 8
        p = self.params
        items, m, n = self.logical
        data = memory[self.base * bb:(self.base + self.words) * bb]
        per_word = self.rows_per_word
        if per_word > 1:
            data = data.reshape(items, p["n_ob"], p["m_pad"], bb // per_word).transpose(0, 2, 1, 3)
        else:
            data = data.reshape(items, p["m_pad"], p["n_ob"], p["words_per_row"] * bb)
        blocks = unpack_out_rows(data[:, :m].reshape(-1, data.shape[-1]), p["cols"], self.bits, p["signed"])
        logical = blocks.reshape(items, m, p["n_ob"] * p["cols"])
        logical = logical[:, :, p["key_slots"]] if "key_slots" in p else logical[:, :, :n]
        transposed = tuple(self.shape[a] for a in self.axes)
        return logical.reshape(transposed).transpose(np.argsort(self.axes))

    def _pack_rows(self, codes: np.ndarray, bus_bits: int) -> np.ndarray:
        p = self.params
        x = _to_logical(codes, self.shape, self.axes, self.logical, self.name)   # [items, M, J]
        items, m, _ = x.shape
        x = x[:, :, p["channel_order"]] if p.get("channel_order") is not None else x
        grid = np.empty((items, x.shape[2], p["m_pad"]), np.int64)
        grid[:] = np.asarray(p["pad_codes"], np.int64)[None, :, None]
        grid[:, :, :m] = x.transpose(0, 2, 1)
        per_word = bus_bits // self.bits
        flat = np.zeros((items, p["item_words"] * per_word), np.int64)
        flat[:, :grid[0].size] = grid.reshape(items, -1)
        return pack_codes(flat, self.bits, bus_bits)

    def _pack_vectors(self, codes: np.ndarray, bus_bits: int) -> np.ndarray:
        p = self.params
        x = _to_logical(codes, self.shape, self.axes, self.logical, self.name)   # [items, J, N]
        pad = np.asarray(p["pad_codes"])
        if "key_slots" in p:
            slots = np.asarray(p["key_slots"])
            spread = np.empty(x.shape[:2] + (p["n_slots"],), np.int64)
            spread[:] = pad[:p["n_slots"]]
            spread[:, :, slots] = x
            x = spread
        return pack_codes(vector_blocks(x, p["cols"], p["j_pad"], pad), self.bits, bus_bits)

    def _pack_conv(self, codes: np.ndarray, bus_bits: int) -> np.ndarray:
        p = self.params
        x = _to_logical(codes, self.shape, self.axes, self.logical, self.name)   # [B, C, H, W]
        planes = conv_planes(x, p["channels"], p["padding"], p["stride"], p["phase_len"], p["plane_codes"],
                             p["zero_point"])
        per_word = bus_bits // self.bits
        flat = np.zeros((x.shape[0], p["image_words"] * per_word), np.int64)
        flat[:, :planes[0].size] = planes.reshape(x.shape[0], -1)
        return pack_codes(flat, self.bits, bus_bits)

    def _pack_relative(self, codes: np.ndarray, bus_bits: int) -> np.ndarray:
        p = self.params
        x = _to_logical(codes, self.shape, self.axes, self.logical, self.name)   # [items, M, J]
        items, m, _ = x.shape
        terms = RelativePosition(tuple(np.asarray(t, np.int64) for t in p["tables"]), tuple(p["multipliers"]),
                                 tuple(p["shifts"]), p["q_zero"])
        side, rows, pitch = p["side"], p["rows"], p.get("pitch", p["side"])
        padded = [np.zeros((items, p["m_pad"], pitch), np.int64) for _ in range(2)]
        for term, out in zip(terms.terms(x), padded):
            out[:, :m, :side] = term
        height, width = (t.reshape(-1, rows, pitch) for t in padded)
        blocks = [pack_relative_terms(h, w, bus_bits) for h, w in zip(height, width)]
        assert all(b.size == p["block_words"] * bus_bits // 8 for b in blocks)
        return np.concatenate(blocks)


def vector_blocks(x: np.ndarray, cols: int, j_pad: int, pad_codes: np.ndarray) -> np.ndarray:
    """[items, J, N] column operands -> [items, n_ob, J_pad, cols] with columns past N set to their pad
    codes (and vectors past J to 0): the order of the WGT vectors in memory."""
    items, j, n = x.shape
    n_ob = -(-n // cols)
    out = np.zeros((items, j_pad, n_ob * cols), np.int64)
    out[:, :j, :] = np.asarray(pad_codes, np.int64)[None, None, :] if pad_codes.size else 0
    out[:, :j, :n] = x
    return out.reshape(items, j_pad, n_ob, cols).transpose(0, 2, 1, 3)


def conv_planes(x: np.ndarray, channels: int, padding: int, stride: int, phase_len: int, plane_codes: int,
                zero_point: int) -> np.ndarray:
    """[B, C, H, W] codes -> [B, channels, plane_codes]: each channel's padded rows, every row split into
    ``stride`` column phases (padded column u at (u mod stride) * phase_len + u div stride)."""
    b, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    padded = np.full((b, channels, hp, wp), zero_point, np.int64)
    padded[:, :c, padding:padding + h, padding:padding + w] = x
    rows = np.full((b, channels, hp, stride * phase_len), zero_point, np.int64)
    u = np.arange(wp)
    rows[..., (u % stride) * phase_len + u // stride] = padded
    out = np.full((b, channels, plane_codes), zero_point, np.int64)
    out[..., :hp * stride * phase_len] = rows.reshape(b, channels, -1)
    return out


def rows_region(name: str, shape, axes, logical, m_pad: int, item_words: int, bits: int, code_bits: int,
                pad_codes, channel_order=None) -> Region:
    params = {"m_pad": m_pad, "item_words": item_words, "code_bits": code_bits,
              "pad_codes": [int(v) for v in pad_codes],
              "channel_order": None if channel_order is None else [int(v) for v in channel_order]}
    return Region(name, "rows", 0, logical[0] * item_words, tuple(shape), bits, tuple(axes), tuple(logical), params)


def vectors_region(name: str, shape, axes, logical, cols: int, j_pad: int, bits: int, code_bits: int, pad_codes,
                   words: int, key_slots=None) -> Region:
    params = {"cols": cols, "j_pad": j_pad, "code_bits": code_bits, "pad_codes": [int(v) for v in pad_codes]}
    if key_slots is not None:
        params.update(key_slots=[int(v) for v in key_slots], n_slots=int(max(key_slots)) + 1)
    return Region(name, "vectors", 0, words, tuple(shape), bits, tuple(axes), tuple(logical), params)


def conv_region(name: str, shape, channels: int, padding: int, stride: int, phase_len: int, plane_codes: int,
                image_words: int, bits: int, code_bits: int, zero_point: int) -> Region:
    params = {"channels": channels, "padding": padding, "stride": stride, "phase_len": phase_len,
              "plane_codes": plane_codes, "image_words": image_words, "code_bits": code_bits,
              "zero_point": int(zero_point)}
    return Region(name, "conv", 0, shape[0] * image_words, tuple(shape), bits, tuple(range(4)), tuple(shape), params)


def relative_region(source: str, shape, axes, logical, relative: RelativePosition, side: int, rows: int, m_pad: int,
                    block_words: int, code_bits: int, pitch: int | None = None) -> Region:
    """The ``relative`` region of the queries ``source`` (module docstring)."""
    params = {"source": source, "tables": [t.tolist() for t in relative.tables],
              "multipliers": [int(v) for v in relative.multipliers], "shifts": [int(v) for v in relative.shifts],
              "q_zero": int(relative.q_zero), "side": side, "rows": rows, "m_pad": m_pad, "block_words": block_words,
              "code_bits": code_bits}
    if pitch is not None and pitch != side:
        params["pitch"] = pitch
    words = logical[0] * (m_pad // rows) * block_words
    return Region(f"{source}.relative", "relative", 0, words, tuple(shape), RELATIVE_TERM_BITS, tuple(axes),
                  tuple(logical), params)


def out_region(name: str, shape, axes, logical, m_pad: int, n_ob: int, cols: int, element_bits: int, signed: bool,
               words_per_row: int, rows_per_word: int = 1, key_slots=None) -> Region:
    params = {"m_pad": m_pad, "n_ob": n_ob, "cols": cols, "signed": bool(signed), "words_per_row": words_per_row}
    if key_slots is not None:
        params["key_slots"] = [int(v) for v in key_slots]
    if rows_per_word > 1:
        params["rows_per_word"] = rows_per_word
    words = logical[0] * m_pad * n_ob * words_per_row // rows_per_word
    return Region(name, "out_rows", 0, words, tuple(shape), element_bits, tuple(axes), tuple(logical), params)


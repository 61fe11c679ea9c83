"""Tiling of convolutions with a spatial kernel (k > 1, stride or padding): im2col by address strides.

A tile is R output pixels of one output row x ``cols`` output channels; the batch loop steps output
rows. The input is stored padded with the zero-point code, one plane of ``H + 2p`` rows per channel,
each row split into ``stride`` column phases (padded column u at (u mod s) * phase_len + u div s), so
output pixels x, x + 1, ... of kernel tap (ki, kj) read consecutive codes. The reduction index is
j = (c, i, d) with i = ki * s + (kj mod s) and d = kj div s:

    address = row base + c * plane + i * phase_len + d + x,   row base = y * s * row_len

which is linear in c, i and d. With s > 1 the tap grid has ceil(kw / s) * s columns; the taps past kw
get zero weights. Depthwise convs run as dense ones over the ``cols`` channels of their own column
block (block-diagonal weights, ``act.ob`` steps the channel block); other grouped convs as dense ones
with zero weights outside each output channel's group.

A job is a band of output rows of one image for a chunk of column blocks. Planes are stored back to back,
each rounded to whole words. When the whole image fits, it is loaded in one copy; otherwise a band of rows
of every channel is one strided copy of the words the band spans (the same in every plane), and the GEMM
starts as many codes into the first word as the band starts into its word.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from hw.core.config import CoreConfig
from hw.core.isa import ColumnSlot, DescActStrides, DescOtherStrides
from hw.fsim.layout import out_words_per_row, pack_codes, pack_entries

from .emit import Copy, Fill, Job, contiguous
from .plan import MAX_OUT_ROW, Arith, Capacity, Plan, chunks, largest, round_up, slot_blocks, too_big
from .regions import conv_region, out_region, vector_blocks


@dataclass(frozen=True)
class ConvSpec:
    where: str
    arith: Arith
    shape: tuple                   # input [B, C, H, W]
    code_bits: int
    zero_point: int
    weights: np.ndarray            # [O, C/groups, kh, kw] codes
    weight_zero: np.ndarray        # [O]
    groups: int
    stride: int
    padding: int
    slots: list[ColumnSlot]        # one per output channel, padded to whole column blocks
    out_signed: bool

    @property
    def depthwise(self) -> bool:
        o, cg = self.weights.shape[:2]
        return self.groups > 1 and self.groups == o == self.shape[1] and cg == 1


def conv_output_size(h: int, w: int, kh: int, kw: int, stride: int, padding: int) -> tuple[int, int]:
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def tap_weights(spec: ConvSpec, cols: int) -> np.ndarray:
    """Column operand codes [J, O] in reduction order j = (c, i, d) (see the module docstring)."""
    o, cg, kh, kw = spec.weights.shape
    s = spec.stride
    n_i, n_d = kh * s, -(-kw // s)
    c_red = cols if spec.depthwise else spec.shape[1]
    zp = spec.weight_zero.astype(np.int64)
    out = np.broadcast_to(zp, (c_red, n_i, n_d, o)).copy()
    for i in range(n_i):
        ki, phase = divmod(i, s)
        for d in range(n_d):
            kj = d * s + phase
            if kj >= kw:
                continue
            tap = spec.weights[:, :, ki, kj].astype(np.int64)          # [O, C/groups]
            if spec.depthwise:
                out[np.arange(o) % cols, i, d, np.arange(o)] = tap[:, 0]
            else:
                og = o // spec.groups
                for oc in range(o):
                    g = oc // og
                    out[g * cg:(g + 1) * cg, i, d, oc] = tap[oc]
    return out.reshape(c_red * n_i * n_d, o)


def plan_conv(config: CoreConfig, spec: ConvSpec, slots: int) -> Plan:
    R, K, P = config.rows, config.cols, config.codes_per_act_word
    vw, spw = config.vectors_per_wgt_word, config.slots_per_param_word
    b_img, c, h, w = spec.shape
    o, _, kh, kw = spec.weights.shape
    s, pad = spec.stride, spec.padding
    ho, wo = conv_output_size(h, w, kh, kw, s, pad)
    hp, wp = h + 2 * pad, w + 2 * pad
    n_rb = -(-wo // R)
    wo_pad = n_rb * R
    n_i, n_d = kh * s, -(-kw // s)
    n_ob = -(-o // K)
    n_c = K if spec.depthwise else c
    c_pad = n_ob * K if spec.depthwise else c
    j = n_c * n_i * n_d
    j_pad = round_up(j, vw)
    ks = round_up(K, spw)
    wpr = out_words_per_row(K, spec.arith.element_bits, config.bus_bits)
    cap = Capacity.of(config, slots, spec.arith)
    phase_min = max(-(-wp // s), wo_pad + n_d - 1)

    def channels(nob):
        return nob * K if spec.depthwise else c

    def common_ok(nob, ny):
        return (nob * j_pad <= cap.wgt_vectors and nob * ks <= cap.slots and nob * wpr <= MAX_OUT_ROW
                and ny * wo_pad * nob * wpr <= cap.out_words)

    phase_len = phase_min
    row_len = s * phase_len
    plane = round_up(hp * row_len, P)
    nob = largest(n_ob, lambda v: common_ok(v, ho) and channels(v) * plane <= cap.act_codes)
    whole = nob >= 1
    ny, act_c, bands = ho, plane, None
    if not whole:
        best = min((_bands(padded_rows, phase_min, s, hp, ho, kh, P, n_ob, channels, common_ok, cap.act_codes)
                    for padded_rows in (True, False)), key=lambda band: (band.loaded_words, not band.padded))
        if best.nob < 1 or best.ny < 1:
            raise too_big(spec.where, f"one output row of {wo} pixels x {K} channels", slots,
                          {"ACT": (channels(1) * best.room(1) // P, cap.act_codes // P),
                           "WGT": (j_pad // vw, cap.wgt_vectors // vw),
                           "PARAM": (ks // spw, cap.slots // spw),
                           "OUT": (wo_pad * wpr, cap.out_words)})
        nob, ny, act_c, bands = best.nob, best.ny, best.room(best.ny), best
        phase_len, row_len, plane = best.phase_len, best.row_len, best.plane
    image_words = -(-c_pad * plane // P)
    col_words = j_pad // vw
    desc_for = {}

    def descriptor(nob_job):
        if nob_job not in desc_for:
            act = DescActStrides(b=s * row_len, rb=R, ob=K * act_c if spec.depthwise else 0, c=act_c, i=phase_len,
                                 d=1)
            other = DescOtherStrides(wgt_b=0, wgt_ob=j_pad, out_b=wo_pad * nob_job * wpr, out_ob=wpr,
                                     out_rb=R * nob_job * wpr, out_row=nob_job * wpr, col_b=0, col_ob=ks)
            desc_for[nob_job] = spec.arith.descriptor(nob_job, n_c, n_i, n_d, act, other)
        return desc_for[nob_job]

    jobs = []
    for o0, nobj in chunks(n_ob, nob):
        ch0 = o0 * K if spec.depthwise else 0
        chans = channels(nobj)
        for b in range(b_img):
            for y0, nyj in chunks(ho, ny):
                start = 0      # codes into the band's first word
                if whole:
                    act_copies = contiguous("conv", b * image_words + ch0 * plane // P, -(-chans * plane // P))
                else:
                    word, start = divmod(y0 * s * row_len, P)
                    act_copies = [Copy("conv", b * image_words + ch0 * plane // P + word, chans,
                                       bands.words(start, bands.rows_in(nyj)), plane // P, act_c // P)]
                fills = (Fill("act", ("act", b, y0, ch0), tuple(act_copies)),
                         Fill("wgt", ("wgt", o0), tuple(contiguous("weights", o0 * col_words, nobj * col_words))),
                         Fill("slots", ("slots", o0), tuple(contiguous("slots", o0 * ks // spw, nobj * ks // spw))))
                store = Copy("out", ((b * ho + y0) * wo_pad * n_ob + o0) * wpr, nyj * wo_pad, nobj * wpr,
                             n_ob * wpr, nobj * wpr)
                jobs.append(Job(fills, descriptor(nobj), start, 0, 0, nyj, n_rb, (store,)))

    pad_codes = np.zeros(n_ob * K, np.int64)
    pad_codes[:o] = spec.weight_zero
    blocks = vector_blocks(tap_weights(spec, K)[None], K, j_pad, pad_codes)[0]
    static = {"weights": pack_codes(blocks, config.weight_bits, config.bus_bits),
              "slots": pack_entries(slot_blocks(spec.slots, ks, K, False), config.bus_bits)}
    inputs = {"conv": conv_region("input", spec.shape, c_pad, pad, s, phase_len, plane, image_words,
                                  config.act_bits, spec.code_bits, spec.zero_point)}
    outputs = {"out": out_region("output", (b_img, o, ho, wo), (0, 2, 3, 1), (b_img * ho, wo, o), wo_pad, n_ob, K,
                                 spec.arith.element_bits, spec.out_signed, wpr)}
    macs = b_img * ho * wo * o * (c // spec.groups) * kh * kw
    return Plan(jobs, slots, static, inputs, outputs, macs)


@dataclass(frozen=True)
class Bands:
    """One way to cut a conv's input into bands of output rows: rows padded to whole words or not (4-bit rows
    of 66 codes take 128 padded; unpadded, a band takes the words it spans, but each channel's room must
    allow for a start anywhere in a word), its column blocks per job, output rows per band, and the ACT
    words it loads in all."""

    padded: bool
    phase_len: int
    row_len: int
    plane: int
    per_word: int
    kh: int
    stride: int
    nob: int = 0
    ny: int = 0
    loaded_words: float = float("inf")

    def rows_in(self, ny: int) -> int:
        """Input rows a band of ``ny`` output rows reads."""
        return (ny - 1) * self.stride + self.kh

    def room(self, ny: int) -> int:
        """ACT codes a channel's band of ``ny`` output rows may need."""
        codes = self.rows_in(ny) * self.row_len
        return codes if self.padded else round_up(self.per_word - 1 + codes, self.per_word)

    def words(self, start: int, rows: int) -> int:
        """Words a channel's band of ``rows`` input rows loads: its rows' when rows are padded to whole words,
        else the words it spans from ``start`` codes into its first word."""
        codes = rows * self.row_len
        return codes // self.per_word if self.padded else -(-(start + codes) // self.per_word)


def _bands(padded: bool, phase_min: int, s: int, hp: int, ho: int, kh: int, P: int, n_ob: int, channels, common_ok,
           act_codes: int) -> Bands:
    """The ``padded`` or unpadded cut of a conv's input into bands that loads the fewest ACT words: fewer
    channels per job buy taller bands, so less overlap between bands (depthwise: no reuse across channels)."""
    phase_len = round_up(phase_min, P // math.gcd(P, s)) if padded else phase_min
    row_len = s * phase_len
    cut = Bands(padded, phase_len, row_len, hp * row_len if padded else round_up(hp * row_len, P), P, kh, s)

    def rows_for(v):
        return largest(ho, lambda y: common_ok(v, y) and channels(v) * cut.room(y) <= act_codes)

    def loaded(v, y):
        per_channel = sum(cut.words(y0 * s * row_len % P, cut.rows_in(ny)) for y0, ny in chunks(ho, y))
        return sum(channels(nobj) for _, nobj in chunks(n_ob, v)) * per_channel

    widest = largest(n_ob, lambda v: common_ok(v, 1) and channels(v) * cut.room(1) <= act_codes)
    if not widest:
        return cut
    options = [(loaded(v, y), -v, v, y) for v in range(1, widest + 1) for y in (rows_for(v),) if y]
    if not options:
        return cut
    words, _, nob, ny = min(options)
    return dataclasses.replace(cut, nob=nob, ny=ny, loaded_words=words)

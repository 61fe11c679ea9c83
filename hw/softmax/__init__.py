"""The on-chip softmax: ``unit.LogSoftmaxUnit`` computes ``sw.ref.log_softmax`` row by row in RTL, and
``constants.LayerConstants`` gives the port values of one attention layer; ``score_store.ScoreStore``
holds a tile of the core's scores until its rows are complete, ``grid_bias.GridBias`` gives each beat
TinyViT's attention bias from a per-lane copy of the head's table, and ``path.SoftmaxPath`` has that
store (and bias) feed the unit."""

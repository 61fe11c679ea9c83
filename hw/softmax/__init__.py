"""The on-chip softmax: ``unit.LogSoftmaxUnit`` computes ``sw.ref.log_softmax`` row by row in RTL, and
``constants.LayerConstants`` gives the port values of one attention layer."""

"""Human-readable summary of a validated bundle (``samhw inspect``)."""

from __future__ import annotations

from .codes import AgqCodes, CagCodes, HluqCodes
from .host import HostLayer, TinyVitStructure
from .layers import AttentionLayer, GemmLayer, Layer
from .outputs import HostOutput
from .store import Bundle


def _output(layer: GemmLayer | AttentionLayer) -> str:
    out = layer.output
    return f"host int{out.host_bits}" if isinstance(out, HostOutput) else f"{out.act_bits}-bit codes"


def describe(layer: Layer) -> str:
    if isinstance(layer, HostLayer):
        values = sum(t.size for t in layer.parameters.values())
        encoder = layer.structure.encoder
        kind = encoder.TAG if isinstance(encoder, TinyVitStructure) else encoder.class_name
        return f"{len(layer.parameters)} float32 tensors ({values} values) for the host steps, {kind} structure"
    if isinstance(layer, AttentionLayer):
        sm = layer.softmax
        softmax = f"AGQ tau={sm.tau} Q={sm.max_shift}" if isinstance(sm, AgqCodes) else "uniform softmax"
        return (f"heads={layer.heads} d={layer.key_dim}/{layer.value_dim} keys<={layer.max_keys} {softmax} -> "
                f"{_output(layer)}")
    fmt = layer.input
    shape = "x".join(str(d) for d in layer.weights.codes.shape)
    inp = fmt.TAG
    if isinstance(fmt, CagCodes):
        inp += f"(G={fmt.groups})"
    elif isinstance(fmt, HluqCodes):
        inp += f"(L_log={fmt.log_levels})"
    return f"W{layer.weights.weight_bits} {shape} in={inp}{fmt.act_bits} F={layer.group_frac_bits} -> {_output(layer)}"


def summarize(bundle: Bundle) -> str:
    h = bundle.header
    lines = [f"{bundle.path}: {h.model} {h.recipe} W{h.weight_bits}A{h.act_bits} ({h.tool}), "
             f"{len(bundle.layers)} layers, all checksums valid"]
    width = max((len(n) for n in bundle.layers), default=0)
    for name, layer in bundle.layers.items():
        lines.append(f"  {name:<{width}}  {layer.TAG:<9}  {describe(layer)}")
    return "\n".join(lines)

"""Human-readable summary of a validated bundle (``samhw inspect``)."""

from __future__ import annotations

from .bundle import Bundle


def _describe(layer) -> str:
    p = layer.params
    if layer.kind == "host":
        values = sum(t.size for t in layer.tensors.values())
        return f"{len(layer.tensors)} float32 tensors ({values} values) for the host steps, {p['encoder']['type']} structure"
    if layer.kind == "attention":
        sm = p["softmax"]
        softmax = f"AGQ tau={sm['tau']} Q={sm['max_shift']}" if sm["format"] == "agq" else "uniform softmax"
        return f"heads={p['heads']} keys<={p['max_keys']} {softmax} -> {p['output']['bits']}-bit codes"
    fmt = p["input"]
    shape = "x".join(str(d) for d in layer["weight_codes"].shape)
    inp = fmt["format"]
    if inp == "cag":
        inp += f"(G={fmt['groups']})"
    elif inp == "hluq":
        inp += f"(L_log={fmt['log_levels']})"
    out = p["output"]
    target = "host int16" if out["to"] == "host" else f"{out['bits']}-bit codes"
    return f"W{p['weight_bits']} {shape} in={inp}{fmt['bits']} F={p['group_frac_bits']} -> {target}"


def summarize(bundle: Bundle) -> str:
    h = bundle.header
    lines = [f"{bundle.path}: {h['model']} {h['recipe']} W{h['weight_bits']}A{h['act_bits']} ({h['tool']}), "
             f"{len(bundle.layers)} layers, all checksums valid"]
    width = max((len(n) for n in bundle.layers), default=0)
    for name, layer in bundle.layers.items():
        lines.append(f"  {name:<{width}}  {layer.kind:<9}  {_describe(layer)}")
    return "\n".join(lines)

"""Which torch module a node of a compiled graph came from, in the user's own words (``features.3.conv.1``).

Every backend keeps the module path in its node names, each in its own spelling:

- ONNX, TorchScript exporter (edgekit's first choice, ``onnx_export``): ``/features/features.3/conv/conv.1/Conv``:
  one scope per module level, each the module's path relative to its owner (containers' children extend it), op
  type last. ONNX Runtime's
  quantizer keeps these names (its Q/DQ nodes append ``_QuantizeLinear``/``_DequantizeLinear`` to the tensor's name).
- ONNX, dynamo exporter: ``pkg.torch.onnx.name_scopes`` in the node's metadata_props (a list, one entry per level,
  last the module's full path); the node name itself is ``node_<op>_<n>``.
- OpenVINO, traced by ``ov.convert_model``: ``__module.features.3.conv.1/aten::_convolution/Convolution``; NNCF's
  FakeQuantize nodes append ``/fq_output_0`` to the quantized node's name. An IR converted from ONNX keeps the ONNX
  node names (the first rule).
- LiteRT (litert-torch): tensor names are ``/``-paths of ``<class>_<attribute>`` scopes, several ``;``-separated
  when ops were fused (the first is the op's own module).

A node made outside any module (``torch.flatten`` in ``forward``, ONNX ``Constant_26``) belongs to the root
module, spelled ``""``. One function per direction: ``layer_of_*`` (node -> module path) and ``nodes_of``
(module path -> the nodes a backend's exclusion list needs: ONNX Runtime ``nodes_to_exclude``, NNCF
``IgnoredScope(names=...)``), so "keep layer X in float" reads the same on every backend.
"""

from __future__ import annotations

import ast
import re
from typing import Callable, Iterable

ROOT = ""
DYNAMO_WRAPPER = "inner"   # edgekit.models.onnx_export._Named's attribute
_NNCF_SUFFIX = re.compile(r"/fq_(output|weights)_\d+$")


def layer_of_onnx_name(name: str) -> str:
    """Module path of a TorchScript-exported ONNX node (``/features/features.1/conv/conv.0/Conv`` ->
    ``features.1.conv.0``).

    Each scope is a module's path relative to the module that owns it: the nearest ancestor that is not a
    container. A container's children extend its scope (``features`` -> ``features.1``, ``conv`` -> ``conv.0``),
    so a scope that extends the one before it shares that one's owner; any other scope is owned by the module
    before it."""
    if not name.startswith("/"):
        return ROOT
    owner = path = ""
    previous = None
    for scope in (s for s in name.split("/")[1:-1] if s):
        if previous is None or not scope.startswith(previous + "."):
            owner = path
        path = f"{owner}.{scope}" if owner else scope
        previous = scope
    return path


def layer_of_onnx_node(node) -> str:
    """Module path of an ``onnx.NodeProto`` from either torch exporter. The dynamo exporter's name_scopes list
    the module paths from the root, then the op's own name (``['', 'inner', 'inner.fc', 'linear']``); edgekit's
    dynamo route wraps the model as ``inner`` (``onnx_export._Named``), which is not part of the user's path."""
    for prop in getattr(node, "metadata_props", ()):
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(prop.value) if s]
            except (ValueError, SyntaxError):
                break
            path = ""
            for scope in scopes:   # module paths extend each other; the op name that follows does not
                if path and not scope.startswith(path + "."):
                    break
                path = scope
            if len(scopes) > 1 and scopes[0] == DYNAMO_WRAPPER:
                path = path[len(DYNAMO_WRAPPER) + 1:] if path.startswith(DYNAMO_WRAPPER + ".") else ROOT
            return path
    return layer_of_onnx_name(node.name)


def layer_of_openvino_name(name: str) -> str:
    """Module path of an OpenVINO node's friendly name (``__module.features.3/aten::relu/Relu``); an IR converted
    from ONNX keeps the ONNX names. NNCF's ``/fq_output_0`` suffix is dropped first."""
    name = _NNCF_SUFFIX.sub("", name)
    if name.startswith("__module."):
        return name[len("__module."):].split("/", 1)[0]
    if name.startswith("/"):
        return layer_of_onnx_name(name)
    return ROOT


def layer_of_litert_name(name: str) -> str:
    """Module path of a LiteRT tensor name from litert-torch: ``;``-separated fields, the first naming the op's
    module as a ``/``-path of ``<class qualname>_<attribute>`` scopes from the exported root
    (``...ChannelLastIOWrapper/pkg.Net_wrapped/torch.nn.modules.container.Sequential_features/pkg.Block_1/
    torch.nn.modules.activation.ReLU_act`` -> ``features.1.act``). edgekit's NHWC wrapper holds the user's model
    as ``wrapped``, which is not part of the user's path."""
    field = next((f.strip() for f in name.split(";") if f.strip()), "")
    scopes = field.split("/")
    attrs = []
    for scope in scopes[1:]:
        last = scope.rsplit(".", 1)[-1]
        cut = last.find("_", len(last) - len(last.lstrip("_")))   # after the class name (which may start with _)
        if cut > 0:
            attrs.append(last[cut + 1:])
    if attrs and attrs[0] == "wrapped" and scopes[0].endswith("ChannelLastIOWrapper"):
        attrs = attrs[1:]
    return ".".join(attrs)


def litert_paths(module, sample) -> dict[str, str]:
    """{module path as a LiteRT file spells it: full module path} for the modules of ``module`` (a torch
    ``nn.Module``; ``sample``: one input it takes). LiteRT's scopes come from the export's module call stack,
    one scope per *called* module with the last part of its path, so a container never called itself
    (``nn.ModuleList``, and its stand-in in an unflattened program) is missing from them: EfficientNet's
    ``_blocks.3._swish`` reads ``3._swish``. Which modules are called is seen in one forward pass. A spelling
    two modules share is left out (it names neither)."""
    import torch

    called: set[str] = set()
    handles = [m.register_forward_pre_hook(lambda _m, _a, p=path: called.add(p)) for path, m in module.named_modules()]
    try:
        with torch.no_grad():
            module(sample)
    finally:
        for handle in handles:
            handle.remove()
    seen: dict[str, list[str]] = {}
    for path in sorted(called - {ROOT}):
        parts = path.split(".")
        spelled = [parts[i] for i in range(len(parts)) if ".".join(parts[:i + 1]) in called]
        seen.setdefault(".".join(spelled), []).append(path)
    return {spelled: paths[0] for spelled, paths in seen.items() if len(paths) == 1 and spelled != paths[0]}


def within(layer: str, module: str) -> bool:
    """True when ``layer`` is ``module`` or one of its submodules (``features.3.conv`` is within ``features.3``)."""
    return module == ROOT or layer == module or layer.startswith(module + ".")


def nodes_of(module: str, names: Iterable[str], layer_of: Callable[[str], str]) -> list[str]:
    """The node names (in the order given) that belong to ``module`` or its submodules: what an exclusion list
    needs to keep that module in float. ``layer_of`` is the backend's ``layer_of_*_name``."""
    return [n for n in names if within(layer_of(n), module)]

"""Graph fixes before PT2E quantization for LiteRT.

PT2E's quantizer annotates patterns by *module* (source partitions). torchvision's BasicBlock and
Bottleneck call one ``self.relu`` module two or three times, so the add+ReLU of every residual is one
partition with several uses and stays in float (seen here: every residual add dequantized). Giving
each call of a stateless activation module its own copy (a torch.fx rewrite; weights are untouched)
lets the quantizer see each add+ReLU on its own.
"""

from __future__ import annotations

import copy
import operator

import torch
import torch.nn as nn

STATELESS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.GELU,
             nn.LeakyReLU, nn.Tanh)


def shared_activation_modules(module: nn.Module, sample: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """Names of stateless activation modules called more than once in one forward pass."""
    calls: dict[str, int] = {}
    handles = []
    for name, sub in module.named_modules():
        if isinstance(sub, STATELESS):
            handles.append(sub.register_forward_hook(
                lambda _m, _i, _o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1)))
    try:
        with torch.no_grad():
            module(*sample)
    finally:
        for h in handles:
            h.remove()
    return {n: c for n, c in calls.items() if c > 1}


def unshare_activations(module: nn.Module, shared: dict[str, int]) -> nn.Module:
    """A GraphModule in which every call of a shared activation module has its own copy."""
    gm = torch.fx.symbolic_trace(module)
    seen: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in shared:
            k = seen.get(node.target, 0)
            seen[node.target] = k + 1
            if k:
                new_name = f"{node.target.replace('.', '_')}_use{k}"
                gm.add_submodule(new_name, copy.deepcopy(gm.get_submodule(node.target)))
                node.target = new_name
    gm.recompile()
    return gm


def prepare_for_pt2e(module: nn.Module, sample: tuple[torch.Tensor, ...]) -> tuple[nn.Module, list[str]]:
    """Returns the module to quantize and the list of fixes applied (for the manifest)."""
    fixes: list[str] = []
    shared = shared_activation_modules(module, sample)
    if shared:
        try:
            module = unshare_activations(module, shared)
            fixes.append(f"gave each use of {len(shared)} shared activation module(s) its own copy "
                         f"(e.g. {next(iter(shared))} used {next(iter(shared.values()))}x)")
        except Exception as err:  # noqa: BLE001 - fx cannot trace every model; quantize as is
            fixes.append(f"shared activations left as is (torch.fx could not trace: {type(err).__name__}); "
                         "their residual adds stay float")
    if any(isinstance(m, nn.Hardsigmoid) for m in module.modules()):
        fixes.append("Hardsigmoid is not quantized by PT2E: it runs in float between dequantize/quantize")
    return module, fixes


def aten_name(node: torch.fx.Node) -> str:
    """An aten op's name without its overload (``div`` for ``aten.div.Tensor``); other targets' own name."""
    return str(getattr(node.target, "_opname", None) or getattr(node.target, "__name__", node.target))


_EXPANDS = (torch.ops.aten.expand.default, torch.ops.aten.expand_as.default)
# Elementwise ops that broadcast their operands themselves.
_BROADCASTING = frozenset({"mul", "add", "sub", "div"})


_SOURCE_KEYS = ("nn_module_stack", "stack_trace")   # where a node came from: its module path names layers


def _inherit_meta(node: torch.fx.Node, *new: torch.fx.Node, keys: tuple[str, ...] = _SOURCE_KEYS) -> None:
    """Gives nodes written in place of ``node`` its source (and, with ``keys``, more of its metadata), so the
    rewritten ops still belong to the user's layer (mixed precision, the INT8 debugger)."""
    for n in new:
        n.meta.update({k: v for k, v in node.meta.items() if k in keys})


def expands_after_permutes(gm: torch.fx.GraphModule) -> int:
    """Rewrites ``expand(x).permute(order)`` as ``x.permute(order).expand(...)`` (the same tensor); returns how
    many. An expand that reaches a broadcasting op only through a permute is then one that
    ``drop_broadcast_expands`` can remove: timm's halo attention adds two expanded, permuted 5-d relative
    logits, and the converter rejected that ``tfl.add`` ("operands don't have broadcast-compatible shapes")."""
    moved = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.permute.default:
            continue
        source = node.args[0]
        if (not isinstance(source, torch.fx.Node) or source.target not in _EXPANDS or len(source.users) != 1
                or node.meta.get("val") is None or not isinstance(source.args[0], torch.fx.Node)):
            continue
        inner = source.args[0]
        if inner.meta.get("val") is None or inner.meta["val"].dim() != node.meta["val"].dim():
            continue
        with gm.graph.inserting_before(node):
            permuted = gm.graph.call_function(torch.ops.aten.permute.default, (inner, node.args[1]))
            expanded = gm.graph.call_function(torch.ops.aten.expand.default,
                                              (permuted, [int(v) for v in node.meta["val"].shape]))
        order = list(node.args[1])
        permuted.meta["val"] = inner.meta["val"].permute(order)
        expanded.meta["val"] = node.meta["val"]
        _inherit_meta(node, permuted, expanded)
        node.replace_all_uses_with(expanded)
        gm.graph.erase_node(node)
        gm.graph.erase_node(source)
        moved += 1
    if moved:
        gm.recompile()
    return moved


def drop_broadcast_expands(gm: torch.fx.GraphModule) -> int:
    """Removes each ``expand`` whose every user is an elementwise op that broadcasts its operands anyway (the same
    result without it); returns how many. LiteRT's converter fails on some of them after its NHWC layout pass
    ("'tfl.mul' op operands don't have broadcast-compatible shapes": ECA's ``x * y.expand_as(x)`` in a ResNet
    block with a projection shortcut, while ``x * y`` converts)."""
    dropped = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in _EXPANDS or not node.users:
            continue
        source, out = node.args[0], node.meta.get("val")
        if not isinstance(source, torch.fx.Node) or out is None or source.meta.get("val") is None:
            continue
        fits = True
        for user in node.users:
            others = [a for a in user.args[:2] if a is not node]
            if user.op != "call_function" or aten_name(user) not in _BROADCASTING or len(others) != 1:
                fits = False
                break
            other = others[0].meta.get("val") if isinstance(others[0], torch.fx.Node) else None
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else ()
            try:
                fits = tuple(torch.broadcast_shapes(tuple(source.meta["val"].shape), shape)) == tuple(out.shape)
            except RuntimeError:
                fits = False
            if not fits:
                break
        if fits:
            node.replace_all_uses_with(source)
            gm.graph.erase_node(node)
            dropped += 1
    if dropped:
        gm.recompile()
    return dropped


def pointwise_conv1d_as_linear(gm: torch.fx.GraphModule) -> int:
    """Rewrites each pointwise ``conv1d`` (kernel 1, stride 1, no padding, one group) as the same product written
    as ``transpose -> linear -> transpose``; returns how many. LiteRT's float converter lowers such a conv to a
    BATCH_MATMUL and, in some graphs, gives it a rank-4 output it then rejects ("'tfl.batch_matmul' op found
    invalid output rank, expected 3 but got 4": EfficientViM's state-space mixer); the linear form converts."""
    rewritten = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.conv1d.default:
            continue
        args = list(node.args) + [None] * (7 - len(node.args))
        x, weight, bias, stride, padding, dilation, groups = args[:7]
        weight_val = weight.meta.get("val") if isinstance(weight, torch.fx.Node) else None
        if (weight_val is None or weight_val.shape[-1] != 1 or list(stride or [1]) != [1]
                or list(padding or [0]) != [0] or list(dilation or [1]) != [1] or (groups or 1) != 1):
            continue
        with gm.graph.inserting_before(node):
            tokens = gm.graph.call_function(torch.ops.aten.transpose.int, (x, 1, 2))
            matrix = gm.graph.call_function(torch.ops.aten.squeeze.dim, (weight, -1))
            product = gm.graph.call_function(torch.ops.aten.linear.default, (tokens, matrix, bias))
            channels = gm.graph.call_function(torch.ops.aten.transpose.int, (product, 1, 2))
        _inherit_meta(node, tokens, matrix, product, channels)
        node.replace_all_uses_with(channels)
        gm.graph.erase_node(node)
        rewritten += 1
    if rewritten:
        gm.recompile()
    return rewritten


def unfold_as_gather(gm: torch.fx.GraphModule) -> int:
    """Rewrites each ``x.unfold(dim, size, step)`` (sliding windows) as one ``index_select`` of the windows'
    positions along ``dim``, split into (windows, size) and the window axis moved last; returns how many. The
    converter lowers unfold to an N-d gather whose layout pass then pushes an earlier ``pad`` to more than 5
    dimensions ("'tfl.pad' op failed to verify that operand 0 is at most 5-D": timm's halo attention pads, then
    unfolds twice); an index_select is a plain GATHER on the original rank."""
    rewritten = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.unfold.default:
            continue
        x, dim, size, step = node.args
        value = x.meta.get("val") if isinstance(x, torch.fx.Node) else None
        if not isinstance(value, torch.Tensor):
            continue
        rank = value.dim()
        dim = dim % rank
        windows = (int(value.shape[dim]) - size) // step + 1
        index = (torch.arange(windows)[:, None] * step + torch.arange(size)[None, :]).flatten()
        name = f"_edgekit_unfold_index_{rewritten}"
        gm.register_buffer(name, index)
        shape = [int(v) for v in value.shape]
        split = shape[:dim] + [windows, size] + shape[dim + 1:]
        order = [i for i in range(rank + 1) if i != dim + 1] + [dim + 1]
        with gm.graph.inserting_before(node):
            positions = gm.graph.get_attr(name)
            taken = gm.graph.call_function(torch.ops.aten.index_select.default, (x, dim, positions))
            grouped = gm.graph.call_function(torch.ops.aten.reshape.default, (taken, split))
            moved = gm.graph.call_function(torch.ops.aten.permute.default, (grouped, order))
        _inherit_meta(node, taken, grouped)
        _inherit_meta(node, moved, keys=("val", *_SOURCE_KEYS))   # the same tensor: a later unfold reads its shape
        node.replace_all_uses_with(moved)
        gm.graph.erase_node(node)
        rewritten += 1
    if rewritten:
        gm.recompile()
    return rewritten


_MATMULS = frozenset({"matmul", "mm", "bmm"})


def outer_products_as_mul(gm: torch.fx.GraphModule) -> int:
    """Rewrites each matrix product whose contracted dimension has size 1 (an outer product, ``[.., m, 1] @
    [.., 1, n]``) as the broadcasting multiply it equals; returns how many. The converter rejected such a product
    after another one ("contracting dimension sizes must match for lhs/rhs": CSATv2's single-channel attention,
    ``softmax(q @ k.T) @ v`` on one-dimensional tokens)."""
    rewritten = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or aten_name(node) not in _MATMULS or len(node.args) != 2:
            continue
        a, b = node.args
        values = [v.meta.get("val") if isinstance(v, torch.fx.Node) else None for v in (a, b, node)]
        if not all(isinstance(v, torch.Tensor) and v.dim() >= 2 for v in values):
            continue
        try:
            same = tuple(torch.broadcast_shapes(values[0].shape, values[1].shape)) == tuple(values[2].shape)
        except RuntimeError:
            same = False
        if values[0].shape[-1] != 1 or values[1].shape[-2] != 1 or not same:
            continue
        node.target, node.args = torch.ops.aten.mul.Tensor, (a, b)
        rewritten += 1
    if rewritten:
        gm.recompile()
    return rewritten


def fold_unlowerable_constants(gm: torch.fx.GraphModule) -> int:
    """Computes ahead, as buffers, the values that do not depend on the input and pass an op LiteRT has no
    lowering for; returns how many. A ViT built for any image size resamples its position embedding in forward
    (``aten._upsample_bicubic2d_aa``: "Lowering not found"); at the file's fixed size that is a constant. Only
    such subgraphs are folded, so every other graph reaches the converter as before. Why by hand: torch.export's
    constant folding runs on a lifted program that litert-torch does not take, and folds every constant."""
    from litert_torch.backend import lowerings

    def constant(node: torch.fx.Node) -> bool:
        return node.op == "get_attr" or (
            node.op == "call_function" and bool(node.all_input_nodes) and all(i in const for i in node.all_input_nodes)
            and torch.Tag.nondeterministic_seeded not in getattr(node.target, "tags", ()))

    const: set[torch.fx.Node] = set()
    unlowerable: set[torch.fx.Node] = set()   # constants that pass such an op
    for node in gm.graph.nodes:
        if constant(node):
            const.add(node)
            if node.op == "call_function" and (any(i in unlowerable for i in node.all_input_nodes) or (
                    node.target is not operator.getitem and lowerings.lookup(node.target) is None)):
                unlowerable.add(node)
    frontier = [n for n in unlowerable if any(u not in const for u in n.users)]
    if not frontier:
        return 0
    needed, todo = set(), list(frontier)   # the constants the frontier reads, and only those
    while todo:
        if (n := todo.pop()) not in needed:
            needed.add(n)
            todo.extend(n.all_input_nodes)
    values: dict[torch.fx.Node, object] = {}
    for node in gm.graph.nodes:   # in order: each constant's inputs are computed before it
        if node in needed:
            values[node] = (operator.attrgetter(str(node.target))(gm) if node.op == "get_attr" else node.target(
                *torch.fx.node.map_arg(node.args, values.__getitem__),
                **torch.fx.node.map_arg(node.kwargs, values.__getitem__)))
    for k, node in enumerate(frontier):
        name = f"_edgekit_folded_{k}"
        gm.register_buffer(name, values[node].detach().clone())
        with gm.graph.inserting_before(node):
            folded = gm.graph.get_attr(name)
        _inherit_meta(node, folded, keys=("val", *_SOURCE_KEYS))
        node.replace_all_uses_with(folded)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return len(frontier)


def converter_rewrites(gm: torch.fx.GraphModule, float_graph: bool) -> list[str]:
    """Rewrites an exported graph the way LiteRT's converter needs, in place; returns what was done. Both graphs
    get their input-independent values through unlowerable ops computed ahead (``fold_unlowerable_constants``),
    lose their redundant expands (``expands_after_permutes``, ``drop_broadcast_expands``) and have their outer
    products written as multiplies (``outer_products_as_mul``) and their unfolds as gathers (``unfold_as_gather``);
    a float graph also gets its pointwise Conv1d layers as linear ones (``pointwise_conv1d_as_linear``; PT2E's
    quantized graph converts them as they are)."""
    fixes = []
    if folded := fold_unlowerable_constants(gm):
        fixes.append(f"{folded} input-independent value(s) through an op with no LiteRT lowering computed ahead")
    if moved := expands_after_permutes(gm):
        fixes.append(f"{moved} expand(s) moved after the permute that followed them")
    if expands := drop_broadcast_expands(gm):
        fixes.append(f"{expands} expand(s) before a broadcasting op removed")
    if products := outer_products_as_mul(gm):
        fixes.append(f"{products} outer product(s) (a matmul over a dimension of 1) written as a multiply")
    if unfolds := unfold_as_gather(gm):
        fixes.append(f"{unfolds} unfold(s) (sliding windows) written as a gather")
    if float_graph and (convs := pointwise_conv1d_as_linear(gm)):
        fixes.append(f"{convs} pointwise Conv1d(s) written as linear layers")
    return fixes


def float_rewrites(module: nn.Module, sample: tuple[torch.Tensor, ...]) -> tuple[nn.Module, list[str]]:
    """``module`` exported with ``converter_rewrites`` applied and what was done, or ``module`` itself when there
    is nothing to rewrite (the converter then sees exactly what it saw before)."""
    gm = torch.export.export(module, sample).module()
    fixes = converter_rewrites(gm, float_graph=True)
    return (gm, fixes) if fixes else (module, [])

"""SplitModel: a classifier cut in two at a learned bottleneck (BottleFit, Matsubara et al.).

The teacher's layers up to the split point are replaced by a small *encoder* (device side, few
channels, strided) whose output is quantized to 8 bits for transfer; a *decoder* on the server
restores the teacher's feature shape at the split and the teacher's remaining layers (the *tail*)
finish the job. ``forward`` = tail(decoder(dequant(quant(encoder(x))))), so the PyTorch accuracy of
a SplitModel *is* the accuracy of the head/tail pair with 8-bit transfer.

The cut is found with ``torch.fx`` (modules on the path to the split point are traced through,
their siblings are kept whole), so any model whose forward is traceable and that has no skip
connection across the split works: our builtins, torchvision ResNets/MobileNets, most timm CNNs.
A SplitModel is rebuilt from its ``arch`` string (``split:{json}``, the ``split`` architecture scheme
registered below), so checkpoints and the stage cache work like for any other model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.fx as fx
import torch.nn as nn

from edgekit.errors import EdgekitError
from edgekit.models.schemes import Scheme, register_scheme, rebuild_architecture

ARCH_PREFIX = "split:"


@dataclass
class SplitConfig:
    """Everything needed to rebuild the architecture (stored in the arch string)."""

    base_arch: str
    split_at: str
    input_shape: tuple[int, int, int]
    feature_shape: tuple[int, int, int]        # the teacher's feature map at the split (C, H, W)
    channels: int                              # bottleneck channels
    bottleneck_hw: tuple[int, int]
    encoder_width: int
    decoder_width: int
    relu_out: bool                             # teacher features are post-ReLU: decoder ends with ReLU

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.bottleneck_hw)

    def arch(self) -> str:
        return ARCH_PREFIX + json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_arch(cls, arch: str) -> "SplitConfig":
        data = json.loads(arch[len(ARCH_PREFIX):])
        for key in ("input_shape", "feature_shape", "bottleneck_hw"):
            data[key] = tuple(data[key])
        return cls(**data)


class TransferQuant(nn.Module):
    """8-bit affine per-tensor quantization of the bottleneck: q = clamp(round(x / s) + z, 0, 255).

    Scale and zero point are buffers (saved with the model, written to the manifest). Until
    ``calibrate`` has run (``enabled`` = 0) it is the identity. In training it is a fake-quant with a
    straight-through gradient, so fine-tuning sees the transfer error.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("zero_point", torch.tensor(0.0))
        self.register_buffer("enabled", torch.tensor(0.0))
        self.active = False   # mirrors ``enabled`` as a Python bool, so export sees no data-dependent branch

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.active = bool(self.enabled)

    @torch.no_grad()
    def calibrate(self, values: torch.Tensor, lower_q: float = 0.0005, upper_q: float = 0.9995) -> None:
        v = values.detach().float().flatten()
        if v.numel() > 2_000_000:
            v = v[torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))[:2_000_000]]
        lo = min(float(torch.quantile(v, lower_q)), 0.0)
        hi = max(float(torch.quantile(v, upper_q)), lo + 1e-6)
        scale = (hi - lo) / 255.0
        self.scale.fill_(scale)
        self.zero_point.fill_(float(min(255, max(0, round(-lo / scale)))))
        self.enabled.fill_(1.0)
        self.active = True

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(x / self.scale) + self.zero_point, 0, 255)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        return (q - self.zero_point) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        y = self.dequantize(self.quantize(x))
        return x + (y - x).detach() if self.training else y

    def settings(self) -> dict:
        return {"bits": 8, "dtype": "uint8", "scheme": "affine per-tensor", "scale": float(self.scale),
                "zero_point": int(self.zero_point), "enabled": bool(self.enabled)}


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def build_encoder(cfg: SplitConfig) -> nn.Module:
    """Strided 3x3 convs down to the bottleneck's spatial size, then a 1x1 conv to ``channels``."""
    c, h, _ = cfg.input_shape
    factor = h // cfg.bottleneck_hw[0]
    steps = int(round(math.log2(factor))) if factor >= 1 else 0
    w = cfg.encoder_width
    layers: list[nn.Module] = _conv_bn_relu(c, w, 2 if steps > 0 else 1)
    for _ in range(max(0, steps - 1)):
        layers += _conv_bn_relu(w, w, 2)
    layers += _conv_bn_relu(w, w)
    layers.append(nn.Conv2d(w, cfg.channels, 1))
    return nn.Sequential(*layers)


def build_decoder(cfg: SplitConfig) -> nn.Module:
    """Back from the bottleneck to the teacher's feature shape at the split (what the tail expects)."""
    fc, fh, fw = cfg.feature_shape
    d = cfg.decoder_width
    layers: list[nn.Module] = _conv_bn_relu(cfg.channels, d)
    if (fh, fw) != tuple(cfg.bottleneck_hw):
        layers.append(nn.Upsample(size=(fh, fw), mode="bilinear", align_corners=False))
    layers += _conv_bn_relu(d, d)
    layers += [nn.Conv2d(d, fc, 3, 1, 1, bias=False), nn.BatchNorm2d(fc)]
    if cfg.relu_out:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SplitModel(nn.Module):
    """encoder (device) -> 8-bit transfer -> decoder + tail (server)."""

    def __init__(self, cfg: SplitConfig, tail: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.quant = TransferQuant()
        self.decoder = build_decoder(cfg)
        self.tail = tail
        self.frozen: set[str] = set()   # submodules kept in eval mode while training (BN stats frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.decoder(self.quant(self.encoder(x))))

    def train(self, mode: bool = True) -> "SplitModel":
        super().train(mode)
        for name in self.frozen:
            getattr(self, name).eval()
        return self

    def head_module(self) -> nn.Module:
        """Device side: image -> float bottleneck (quantization to uint8 happens at transfer)."""
        return self.encoder

    def tail_module(self) -> nn.Module:
        """Server side: dequantized float bottleneck -> logits."""
        return _Tail(self.decoder, self.tail)


class _Tail(nn.Module):
    def __init__(self, decoder: nn.Module, tail: nn.Module):
        super().__init__()
        self.decoder, self.tail = decoder, tail

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.decoder(z))


def is_split_model(module: nn.Module) -> bool:
    return isinstance(module, SplitModel)


# ---------------------------------------------------------------- cutting a model with torch.fx

class _CutTracer(fx.Tracer):
    """Keeps whole every module that is not on the path to ``split_at`` (so it becomes one node)."""

    def __init__(self, split_at: str | None):
        super().__init__()
        self.path = split_at.split(".") if split_at else []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        parts = qualname.split(".") if qualname else []
        on_path = parts == self.path[:len(parts)]
        if qualname and (parts == self.path or (not on_path and parts[:-1] == self.path[:len(parts) - 1])):
            return True
        if on_path and len(parts) < len(self.path):
            return False
        return super().is_leaf_module(m, qualname)


def _trace(model: nn.Module, split_at: str | None) -> fx.GraphModule:
    tracer = _CutTracer(split_at)
    try:
        graph = tracer.trace(model)
    except Exception as err:  # noqa: BLE001 - fx raises many types on untraceable code
        raise EdgekitError(f"cannot trace the model to split it ({type(err).__name__}: {str(err)[:120]})",
                           "the bottleneck stage needs a torch.fx-traceable forward") from None
    return fx.GraphModule(tracer.root, graph)


def _cut_node(gm: fx.GraphModule, split_at: str) -> fx.Node:
    nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == split_at]
    if len(nodes) != 1:
        raise EdgekitError(f"split point '{split_at}' is not a module called once in the model's forward",
                           f"use one of: {', '.join(split_candidates(gm.root if hasattr(gm, 'root') else gm))}")
    return nodes[0]


def _valid_cut(gm: fx.GraphModule, cut: fx.Node) -> bool:
    """True when nothing after ``cut`` uses a value computed before it (no skip across the split)."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for n in gm.graph.nodes:
        if order[n] <= order[cut]:
            continue
        for arg in n.all_input_nodes:
            if order[arg] < order[cut] and arg.op != "get_attr":
                return False
    return True


def split_candidates(model: nn.Module) -> list[str]:
    """Top-level blocks (children with children, not single layers such as a bare conv or BN) that
    are valid split points, in forward order (excluding the last)."""
    gm = _trace(model, None)
    names = []
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and "." not in str(n.target)]
    for node in calls[:-1]:
        if list(model.get_submodule(str(node.target)).children()) and _valid_cut(gm, node):
            names.append(str(node.target))
    return names


def cut_tail(model: nn.Module, split_at: str) -> nn.Module:
    """The part of ``model`` after ``split_at``: a GraphModule taking the split's feature map."""
    gm = _trace(model, split_at)
    cut = _cut_node(gm, split_at)
    if not _valid_cut(gm, cut):
        raise EdgekitError(f"cannot split at '{split_at}': a skip connection crosses it",
                           f"choose a stage boundary, e.g. one of: {', '.join(split_candidates(model))}")
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {cut: graph.placeholder("feature")}
    started = False
    for node in gm.graph.nodes:
        if node is cut:
            started = True
            continue
        if started:
            env[node] = graph.node_copy(node, lambda n: env[n])
    graph.lint()
    tail = fx.GraphModule(model, graph)
    tail.graph.eliminate_dead_code()
    tail.recompile()
    return tail


class _Stop(Exception):
    def __init__(self, value: torch.Tensor):
        self.value = value


@torch.no_grad()
def feature_at(model: nn.Module, split_at: str, x: torch.Tensor) -> torch.Tensor:
    """The output of ``split_at`` for input ``x``; the forward stops there (the rest is not computed)."""

    def hook(module, inputs, output):
        raise _Stop(output)

    handle = model.get_submodule(split_at).register_forward_hook(hook)
    try:
        model.eval()(x)
    except _Stop as stop:
        return stop.value
    finally:
        handle.remove()
    raise EdgekitError(f"module '{split_at}' was not called in the model's forward")


def make_config(model: nn.Module, arch: str, input_shape: tuple[int, int, int], split_at: str, channels: int,
                stride: int, encoder_width: int, decoder_width: int | None, probe: torch.Tensor | None = None
                ) -> SplitConfig:
    """Shapes at the split (from a probe forward) -> the bottleneck's shape. ``auto`` picks the earliest
    top-level point whose bottleneck (channels x H/stride x W/stride bytes) is smaller than the input."""
    probe = probe if probe is not None else torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(0))
    input_bytes = math.prod(input_shape)
    if split_at == "auto":
        chosen = None
        for name in split_candidates(model):
            f = feature_at(model, name, probe)
            if f.ndim != 4:
                continue
            hw = (max(1, f.shape[2] // stride), max(1, f.shape[3] // stride))
            if channels * hw[0] * hw[1] < input_bytes:
                chosen = name
                break
        if chosen is None:
            raise EdgekitError(f"no split point gives a bottleneck smaller than the input ({input_bytes} bytes)",
                               "use fewer bottleneck channels or a larger stride")
        split_at = chosen
    try:
        model.get_submodule(split_at)
    except AttributeError:
        raise EdgekitError(f"the model has no module '{split_at}' to split at",
                           f"use 'auto' or one of: {', '.join(split_candidates(model))}") from None
    f = feature_at(model, split_at, probe)
    if f.ndim != 4:
        raise EdgekitError(f"the output of '{split_at}' is not a feature map (shape {tuple(f.shape)})",
                           "split at a convolutional stage")
    fc, fh, fw = (int(s) for s in f.shape[1:])
    bh, bw = max(1, fh // stride), max(1, fw // stride)
    if input_shape[1] % bh or input_shape[2] % bw or (input_shape[1] // bh) & (input_shape[1] // bh - 1):
        raise EdgekitError(f"bottleneck {bh}x{bw} does not divide the input {input_shape[1]}x{input_shape[2]} "
                           "by a power of two", "change stride or the input size")
    relu_out = bool((f >= 0).all())
    return SplitConfig(base_arch=arch, split_at=split_at, input_shape=tuple(input_shape), feature_shape=(fc, fh, fw),
                       channels=channels, bottleneck_hw=(bh, bw), encoder_width=encoder_width,
                       decoder_width=decoder_width or min(256, max(32, 2 * fc)), relu_out=relu_out)


def build_split_model(cfg: SplitConfig, base: nn.Module) -> SplitModel:
    """A SplitModel whose tail shares ``base``'s layers after the split (copy base first to keep it)."""
    return SplitModel(cfg, cut_tail(base, cfg.split_at))


@register_scheme("split")
class SplitScheme(Scheme):
    """``split:{json}`` (checkpoints and the stage cache): the SplitModel around its rebuilt base."""

    is_source = False

    def rebuild(self, arch: str, num_classes: int, in_channels: int) -> SplitModel:
        cfg = SplitConfig.from_arch(arch)
        return build_split_model(cfg, rebuild_architecture(cfg.base_arch, num_classes, in_channels))

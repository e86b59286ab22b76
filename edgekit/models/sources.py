"""Loading models from their sources, with clear errors for the ways this goes wrong for users
(offline weight downloads, unknown architectures, corrupt or untrusted files)."""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import sys
import zipfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import torch
import torch.nn as nn

from edgekit import ui
from edgekit.errors import EdgekitError, MissingDependency
from edgekit.models.builtin import BUILTIN_MODELS
from edgekit.models.checkpoint import file_sha256, is_checkpoint, load_checkpoint
from edgekit.models.classes import IMAGENET_CLASSES, imagenet_vocabulary
from edgekit.models.footprint import check_input_size, check_memory, footprint
from edgekit.models.loaded import LoadedModel, fx_graphs
from edgekit.models.preprocess import apply_preprocess
from edgekit.models.preprocess import describe as describe_preprocess
from edgekit.models.pt2_vetting import vet_pt2
from edgekit.models.schemes import Scheme, register_scheme, source_scheme
from edgekit.spec import ModelSpec

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _split(source: str) -> tuple[str, str, dict[str, object]]:
    head, _, query = source.partition("?")
    scheme, _, name = head.partition(":")
    return scheme, name, {k: _coerce(v) for k, v in parse_qsl(query)}


def _coerce(value: str) -> object:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(value.lower(), value)


def _with_options(base: str, options: dict[str, object]) -> str:
    return base + ("?" + urlencode(options) if options else "")


def load_model(source: str, num_classes: int | None = None, arch: str | None = None,
               input_size: tuple[int, int] | None = None, trust_pickle: bool = False,
               preprocess: dict | None = None) -> LoadedModel:
    """Load ``source``; ``num_classes`` (from the data) replaces the classifier head when it differs;
    ``preprocess`` (``parse_preprocess``'s dict) sets how files become its input, over any spec it carries."""
    scheme = source_scheme(source)
    if scheme is not None:
        _, name, options = _split(source)
        loaded = scheme.load(name, options, num_classes)
    else:
        loaded = _load_file(Path(source), arch, num_classes, trust_pickle)
    if preprocess is not None:
        _apply_preprocess(loaded, preprocess, input_size)
    if input_size is not None:
        check_input_size(loaded, input_size)
        loaded.spec = loaded.spec.with_input_size(*input_size)
    if num_classes is not None and loaded.spec.num_classes != num_classes:
        replace_classifier(loaded, num_classes)
    check_forward(loaded)
    return loaded


@register_scheme("builtin")
class BuiltinScheme(Scheme):
    """``builtin:<name>?options``: edgekit's own small architectures (random init)."""

    def load(self, name, options, num_classes):
        return _load_builtin(name, options, num_classes)

    def rebuild(self, arch, num_classes, in_channels):
        _, name, options = _split(arch)
        return BUILTIN_MODELS.get(name).build(**{"num_classes": num_classes, "in_channels": in_channels, **options})


@register_scheme("torchvision")
class TorchvisionScheme(Scheme):
    """``torchvision:<arch>?weights=...``: torchvision's model zoo."""

    def load(self, name, options, num_classes):
        return _load_torchvision(name, options, num_classes)

    def rebuild(self, arch, num_classes, in_channels):
        _, name, options = _split(arch)
        return _load_torchvision(name, {**options, "weights": None}, num_classes).module


@register_scheme("timm")
class TimmScheme(Scheme):
    """``timm:<name>?pretrained=...``: timm's model zoo (optional extra)."""

    def load(self, name, options, num_classes):
        return _load_timm(name, options, num_classes)

    def rebuild(self, arch, num_classes, in_channels):
        _, name, options = _split(arch)
        return _load_timm(name, {**options, "pretrained": False}, num_classes).module


def _apply_preprocess(loaded: LoadedModel, preprocess: dict, input_size: tuple[int, int] | None) -> None:
    """The user's preprocessing over the model's spec; replacing a weights' own transform is said."""
    if input_size is not None and "crop" in preprocess and tuple(preprocess["crop"]) != tuple(input_size):
        raise EdgekitError(f"--input-size {input_size[0]}x{input_size[1]} and --preprocess crop="
                           f"{preprocess['crop'][0]}x{preprocess['crop'][1]} disagree", "give the input size once")
    replaced = loaded.spec.transform_from
    loaded.spec = apply_preprocess(loaded.spec, preprocess)
    loaded.notes["spec"] = f"from --preprocess: {describe_preprocess(loaded.spec)}"
    if replaced:
        loaded.notes["spec"] += f" (replaces the {replaced} transform)"
        ui.warn(f"--preprocess replaces the {replaced} transform of {loaded.source}")


def _load_builtin(name: str, options: dict, num_classes: int | None) -> LoadedModel:
    entry = BUILTIN_MODELS.get(name)
    in_channels = int(options.pop("in_channels", entry.in_channels))
    n = int(options.pop("num_classes", num_classes or 10))
    try:
        module = entry.build(num_classes=n, in_channels=in_channels, **options)
    except TypeError as err:
        raise EdgekitError(f"bad option for builtin:{name}: {err}") from None
    arch = _with_options(f"builtin:{name}", options)
    return LoadedModel(module.eval(), entry.spec(n, in_channels), source=f"builtin:{name}", arch=arch,
                       notes={"weights": "random init (builtin)"})


def _load_torchvision(name: str, options: dict, num_classes: int | None) -> LoadedModel:
    import torchvision

    if name not in torchvision.models.list_models():
        raise EdgekitError(f"torchvision has no model '{name}'",
                           "see torchvision.models.list_models(), e.g. torchvision:resnet18")
    weights_name = options.pop("weights", "DEFAULT")
    # transform=<WEIGHTS> with weights=none: random init, but the preprocessing those weights expect (the
    # enum carries it, nothing is downloaded) - a from-scratch run on photos, or a test that must stay offline.
    transform_name = options.pop("transform", None)
    weights = None if weights_name is None else _weights_enum(name, weights_name)
    try:
        # torch.hub announces downloads on stdout; keep stdout clean for --json.
        with contextlib.redirect_stdout(sys.stderr):
            module = torchvision.models.get_model(name, weights=weights, **options)
    except OSError as err:  # URLError (no network) is an OSError
        if weights is None:
            raise
        hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise EdgekitError(f"cannot download weights {weights} for torchvision:{name} ({type(err).__name__})",
                           f"offline? place {Path(weights.url).name} in {hub.parent}, "
                           f"or use torchvision:{name}?weights=none") from None
    source_weights = weights if weights is not None else (
        _weights_enum(name, str(transform_name)) if transform_name is not None else None)
    if weights is not None:
        categories = weights.meta.get("categories")
        spec = torchvision_spec(weights, num_classes=len(categories), class_names=list(categories))
    elif source_weights is not None:
        spec = torchvision_spec(source_weights, num_classes=options.get("num_classes", 1000))
    else:
        n = options.get("num_classes", 1000)
        size = int(options.get("image_size", 224))  # ViTs are built for one resolution
        spec = ModelSpec(input_shape=(3, size, size), mean=IMAGENET_MEAN, std=IMAGENET_STD, num_classes=n)
    arch = _with_options(f"torchvision:{name}", {k: v for k, v in options.items() if k != "num_classes"})
    return LoadedModel(module.eval(), spec, source=f"torchvision:{name}", arch=arch,
                       notes={"weights": str(weights) if weights else "random init"})


def _weights_enum(name: str, weights_name: str):
    import torchvision

    try:
        return torchvision.models.get_weight(f"{torchvision.models.get_model_weights(name).__name__}.{weights_name}")
    except (ValueError, KeyError, AttributeError):
        raise EdgekitError(f"torchvision:{name} has no weights '{weights_name}'",
                           f"see torchvision.models.get_model_weights('{name}')") from None


def torchvision_spec(weights, num_classes: int, class_names: list[str] | None = None) -> ModelSpec:
    """The spec from a weights enum's own eval transform (``weights.transforms()`` builds it without a
    download): short-side resize, centre crop, interpolation, mean/std."""
    t = weights.transforms()
    crop = t.crop_size if isinstance(t.crop_size, (list, tuple)) else [t.crop_size]
    crop_h, crop_w = (crop[0], crop[-1])
    resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else int(t.resize_size)
    return ModelSpec(input_shape=(3, int(crop_h), int(crop_w)), mean=tuple(t.mean), std=tuple(t.std),
                     num_classes=num_classes, class_names=class_names, resize=int(resize),
                     interpolation=t.interpolation.value, transform_from=f"torchvision {weights}")


def timm_spec(module, num_classes: int) -> ModelSpec:
    """The spec from ``timm.data.resolve_data_config`` (input_size, interpolation, crop_pct, crop_mode,
    mean, std). timm's centre mode resizes the short side to floor(size / crop_pct); its other crop modes
    (squash, border) are not short-side resizes, so those squash to the input size and say so."""
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=module)
    c, h, w = (int(v) for v in cfg["input_size"])
    crop_pct, crop_mode = float(cfg.get("crop_pct") or 1.0), cfg.get("crop_mode", "center")
    resize = int(math.floor(min(h, w) / crop_pct)) if crop_mode == "center" else None
    interpolation = cfg.get("interpolation", "bilinear")
    interpolation = interpolation if interpolation in ("nearest", "bilinear", "bicubic", "lanczos", "box",
                                                        "hamming") else "bilinear"
    return ModelSpec(input_shape=(c, h, w), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), num_classes=num_classes,
                     resize=resize, interpolation=interpolation,
                     transform_from=f"timm resolve_data_config (crop_pct {crop_pct}, crop_mode {crop_mode})")


def _load_timm(name: str, options: dict, num_classes: int | None) -> LoadedModel:
    try:
        import timm
    except ImportError:
        raise MissingDependency("timm", "timm", f"model source timm:{name}") from None
    pretrained = bool(options.pop("pretrained", True))
    try:
        module = timm.create_model(name, pretrained=pretrained, **options)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise EdgekitError(f"timm has no model '{name}'", "see timm.list_models()") from None
        raise
    except OSError as err:
        raise EdgekitError(f"cannot download pretrained weights for timm:{name} ({type(err).__name__})",
                           "offline? set HF_HUB_OFFLINE=1 with the weights in the HF cache, "
                           f"or use timm:{name}?pretrained=false") from None
    from timm.data import infer_imagenet_subset

    spec = timm_spec(module, module.num_classes)
    if pretrained and module.num_classes == IMAGENET_CLASSES and infer_imagenet_subset(module) == "imagenet-1k":
        spec = spec.model_copy(update={"class_names": imagenet_vocabulary().names})
    if "img_size" in options:  # created for another resolution (ViT position embeddings follow it)
        size = options["img_size"]
        spec = spec.with_input_size(*((size, size) if isinstance(size, int) else size))
    arch = _with_options(f"timm:{name}", options)
    return LoadedModel(module.eval(), spec, source=f"timm:{name}", arch=arch,
                       notes={"weights": "pretrained" if pretrained else "random init"})


def _load_file(path: Path, arch: str | None, num_classes: int | None, trust_pickle: bool) -> LoadedModel:
    if not path.exists():
        raise EdgekitError(f"model '{path}' not found",
                           "give a file path or builtin:<name>, torchvision:<arch>, timm:<name>")
    if path.is_dir():
        raise EdgekitError(f"model '{path}' is a directory, not a model file")
    sha = file_sha256(path)
    if path.suffix == ".pt2" or _is_pt2(path):
        data = path.read_bytes()  # checked and loaded from the same bytes: the file cannot change in between
        if not trust_pickle:
            vet_pt2(data, str(path))
        try:
            module = _program_module(torch.export.load(io.BytesIO(data)))
        except Exception as err:  # noqa: BLE001 - any failure here means the file is unusable
            raise EdgekitError(f"cannot read exported program {path}: {type(err).__name__}") from None
        dims = getattr(module, "static_dims", {})
        size = (dims[2], dims[3]) if 2 in dims and 3 in dims else None   # what the export fixed, not a guess
        return _spec_less(module, path, sha, num_classes, "torch.export", size)
    if _is_torchscript(path):
        try:
            module = torch.jit.load(path, map_location="cpu")
        except RuntimeError as err:
            raise EdgekitError(f"cannot read TorchScript file {path}: {str(err).splitlines()[0]}") from None
        return _spec_less(module, path, sha, num_classes, "TorchScript")
    with open(path, "rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        raise EdgekitError(f"model file {path} is corrupt or not a PyTorch file",
                           "expected a .pt/.pth from torch.save, a TorchScript file or a .pt2 export")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise EdgekitError(f"model file {path} is corrupt or not a PyTorch file") from None
        if not trust_pickle:
            raise EdgekitError(f"{path} holds a pickled Python object (a full nn.Module); loading it can run "
                               "arbitrary code", "re-run with --trust-pickle if you trust this file, or save a "
                               "state_dict and pass --arch") from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise EdgekitError(f"model file {path} is corrupt or not a PyTorch file ({type(err).__name__})") from None
    if is_checkpoint(obj):
        return load_checkpoint(path, obj)
    if isinstance(obj, nn.Module):
        return _spec_less(obj, path, sha, num_classes, "pickled module")
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if arch is None:
            raise EdgekitError(f"{path} is a state dict without its architecture",
                               "pass --arch, e.g. --arch torchvision:resnet18 or --arch builtin:resnet8")
        return _load_state_dict(path, obj, arch, sha)
    raise EdgekitError(f"{path} holds a {type(obj).__name__}, not a model or a state dict")


def _load_state_dict(path: Path, state: dict, arch: str, sha: str) -> LoadedModel:
    base = load_model(_with_options(arch, {"weights": None}) if arch.startswith("torchvision:") else arch)
    head_out = [v.shape[0] for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    n = head_out[-1] if head_out else base.spec.num_classes
    if n != base.spec.num_classes:
        replace_classifier(base, n)
    missing, unexpected = base.module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EdgekitError(f"state dict {path} does not fit {arch}: {len(missing)} missing keys "
                           f"(e.g. {missing[:1]}), {len(unexpected)} unexpected (e.g. {unexpected[:1]})")
    base.source, base.sha256 = str(path), sha
    base.notes = {"weights": f"state dict {path.name}"}
    return base


def _spec_less(module: nn.Module, path: Path, sha: str, num_classes: int | None, kind: str,
               size: tuple[int, int] | None = None) -> LoadedModel:
    """Files that carry no spec: channels from the first conv, outputs from a probe forward, the input size
    ``size`` where the file fixes it (else 224 px, assumed)."""
    # The first 4-D weight is the stem conv's (works for TorchScript too, where layers lose their types).
    first_conv = next((p for p in module.parameters() if p.ndim == 4), None)
    c = int(first_conv.shape[1]) if first_conv is not None else 3
    spec = ModelSpec(input_shape=(c, *(size or (224, 224))), channel_order="L" if c == 1 else "RGB",
                     mean=IMAGENET_MEAN if c == 3 else (0.5,), std=IMAGENET_STD if c == 3 else (0.25,),
                     num_classes=num_classes or 1000)
    return LoadedModel(module.eval(), spec, source=str(path), arch=None, sha256=sha,
                       notes={"format": kind, "spec": f"assumed (ImageNet mean/std, squashed to {spec.hw[0]}x{spec.hw[1]} "
                                                   f"px{', the size the file fixes' if size else ''}): pass --preprocess "
                                                   "with the model's own, or --input-size"})


def _program_module(program) -> nn.Module:
    """An exported program as a module with the user's module hierarchy back (``torch.export.unflatten``: one
    submodule per module the export recorded, the same parameters, the same graph), so that every backend's file
    names its nodes by the user's module paths (``_blocks.3._depthwise_conv``) and per-layer debugging and
    mixed precision can name layers. The flat ``program.module()`` (one graph, no submodules) when the program
    cannot be unflattened."""
    try:
        module = torch.export.unflatten(program)
    except Exception:  # noqa: BLE001 - e.g. a program without module call records: flat, still usable
        return _EvalOnly(program.module())
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    shape = inputs[0].meta["val"].shape if inputs and "val" in inputs[0].meta else ()
    # The export's own input check reads fake tensors kept in the graphs' node metadata, which neither tracers
    # (TorchScript for ONNX/OpenVINO, torch.export for LiteRT) nor copy.deepcopy (symbolic sizes) can handle: the
    # metadata goes and the static dimensions are checked by ``_check_static_dims`` instead, when run eagerly.
    module.check_input_constraints = False
    for graph in fx_graphs(module):
        for node in graph.nodes:
            for key in ("val", "tensor_meta", "example_value"):
                node.meta.pop(key, None)
    module.static_dims = {i: int(d) for i, d in enumerate(shape) if isinstance(d, int)}
    module.register_forward_pre_hook(_check_static_dims)
    return module


def _check_static_dims(module: nn.Module, args) -> None:
    """The program's static input dimensions (a batch exported without ``dynamic_shapes`` is 1), checked when run
    eagerly, in torch's own words (``_check_batch`` reads them); tracers see symbolic or fixed shapes."""
    tracing = (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
               or torch.fx._symbolic_trace.is_fx_symbolic_tracing())
    if tracing or not args or not isinstance(args[0], torch.Tensor):
        return
    for i, size in module.static_dims.items():
        if i < args[0].ndim and args[0].shape[i] != size:
            raise RuntimeError(f"Expected input at *args[0].shape[{i}] to be equal to {size}, "
                               f"but got {args[0].shape[i]}")


class _EvalOnly(nn.Module):
    """Wraps a torch.export module, which refuses ``.eval()``/``.train()`` (it is inference-only)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def train(self, mode: bool = True) -> "_EvalOnly":
        self.training = mode  # deliberately not propagated to ``inner``
        return self

    def forward(self, x):
        return self.inner(x)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())


def _is_pt2(path: Path) -> bool:
    """A torch.export archive whatever its suffix (renaming must not route it past the .pt2 check)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1] in ("archive_format", "serialized_exported_program.json")
                   for n in z.namelist())


def replace_classifier(loaded: LoadedModel, num_classes: int) -> None:
    """Give the model ``num_classes`` outputs (transfer to the user's data), for every head form:
    timm's own ``reset_classifier`` (it knows distillation heads, LeViT's NormLinear, pooling heads),
    else the last Linear, else a final 1x1 convolution classifier (SqueezeNet)."""
    module = loaded.module
    if isinstance(module, torch.jit.ScriptModule):
        raise EdgekitError(f"model {loaded.source} has {loaded.spec.num_classes} outputs but the data has "
                           f"{num_classes} classes, and a TorchScript head cannot be replaced",
                           "save the model as a state dict with --arch, or export it with the right classes")
    if callable(getattr(module, "reset_classifier", None)) and hasattr(module, "num_classes"):
        old = _head_names(module)
        module.reset_classifier(num_classes)
        loaded.notes["head"] = (f"replaced {', '.join(old) or 'classifier'} with timm reset_classifier: "
                                f"{loaded.spec.num_classes} -> {num_classes} classes (needs training)")
    else:
        name, old = _last_classifier(module, loaded.spec.num_classes)
        if name is None:
            raise EdgekitError(f"model {loaded.source} has {loaded.spec.num_classes} outputs but the data has "
                               f"{num_classes} classes, and it has no Linear or 1x1 convolution head to replace",
                               "replace the head yourself and save the model, or pass data with matching classes")
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
        else:
            new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, new)
        if isinstance(getattr(module, "num_classes", None), int):
            module.num_classes = num_classes
        loaded.notes["head"] = (f"replaced {name} ({type(old).__name__}): {loaded.spec.num_classes} -> "
                                f"{num_classes} classes (needs training)")
    loaded.spec = loaded.spec.model_copy(update={"num_classes": num_classes, "class_names": None})


def _head_names(module: nn.Module) -> list[str]:
    """Module paths of timm's classifier(s) (``get_classifier`` may return a (head, head_dist) pair)."""
    try:
        heads = module.get_classifier()
    except Exception:  # noqa: BLE001 - informational only
        return []
    heads = heads if isinstance(heads, (tuple, list)) else [heads]
    return [n for n, m in module.named_modules() if any(m is h for h in heads)]


def _last_classifier(module: nn.Module, outputs: int) -> tuple[str | None, nn.Module | None]:
    """The last Linear, or failing that the last 1x1 Conv2d with ``outputs`` channels (SqueezeNet)."""
    modules = list(module.named_modules())
    for name, m in reversed(modules):
        if isinstance(m, nn.Linear):
            return name, m
    for name, m in reversed(modules):
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.out_channels == outputs and m.groups == 1:
            return name, m
    return None, None


def check_forward(loaded: LoadedModel) -> None:
    """One dummy forward at the spec's input shape, so a wrong size fails here with a clear error. It runs on the
    meta device where the model allows (shapes only: a size too large for memory is refused before anything is
    allocated), else for real."""
    found = footprint(loaded.module.eval(), loaded.spec.input_shape)
    if found is not None and found.output_shape is not None:
        check_memory(loaded, batch=1, found=found)
        out = torch.empty(found.output_shape, device="meta")
    else:
        out = _real_forward(loaded)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise EdgekitError(f"model {loaded.source} returns {type(out).__name__}"
                           f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}, expected (batch, classes) logits")
    if out.shape[1] != loaded.spec.num_classes:
        loaded.spec = loaded.spec.model_copy(update={"num_classes": int(out.shape[1])})
    if loaded.notes.get("format") == "torch.export":
        _check_batch(loaded)


def _check_batch(loaded: LoadedModel) -> None:
    """A torch.export program keeps the guards of its export: one exported with ``torch.zeros(1, ...)`` and no
    ``dynamic_shapes`` accepts batch 1 only, and edgekit evaluates, calibrates and exports in batches. Said here
    in one line rather than as a guard traceback in the middle of a run."""
    c, h, w = loaded.spec.input_shape
    try:
        with torch.no_grad():
            loaded.module(torch.zeros(2, c, h, w))
    except Exception as err:  # noqa: BLE001 - a guard failure is an AssertionError, others vary
        if "size()[0]" not in str(err) and "shape[0]" not in str(err):
            raise EdgekitError(f"model {loaded.source} fails at batch 2: {str(err).splitlines()[0][:160]}") from None
        raise EdgekitError(f"{loaded.source} was exported for a fixed batch size (its guard: "
                           f"{str(err).splitlines()[0][:80]})",
                           "export with a dynamic batch: torch.export.export(model, (x,), dynamic_shapes="
                           "({0: torch.export.Dim('batch')},)) with x of batch 2") from None


def _real_forward(loaded: LoadedModel):
    c, h, w = loaded.spec.input_shape
    try:
        with torch.no_grad():
            return loaded.module.eval()(torch.zeros(1, c, h, w))
    except Exception as err:  # noqa: BLE001 - any failure means the shape does not fit the model
        msg = str(err).splitlines()[0][:160]
        raise EdgekitError(f"model {loaded.source} does not accept input 1x{c}x{h}x{w}: {msg}",
                           "pass --input-size HxW (or --preprocess crop=HxW) that the model supports") from None

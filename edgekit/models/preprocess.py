"""Preprocessing as data: ``--preprocess "resize=256,crop=224,interpolation=bilinear,mean=127,std=128"`` (or a
YAML file with the same keys, or ``preprocess=`` a dict) sets how image files become a model's input.

A ``.pt2``, TorchScript, state-dict or pickled-module file says nothing about its input; without this edgekit
assumes ImageNet's mean/std at 224 px (and says so). With it the ``ModelSpec`` carries the user's recipe, so
evaluation, calibration, every runtime session and the device runner (``spec.transform()``) use it, and the
bundle records it. Given for a torchvision/timm model it replaces the weights' own transform (and says so).

Units: mean/std are in the [0, 1] scale of torchvision (``(px/255 - mean) / std``) unless a value is above 1,
in which case all of them are 0..255 pixel units: ``mean=127,std=128`` is ``(px - 127) / 128``. ``units=pixel``
or ``units=unit`` says it explicitly. Per-channel values follow their key: ``mean=0.485,0.456,0.406``.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import EdgekitError
from edgekit.spec import ModelSpec

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
KEYS = ("resize", "crop", "interpolation", "mean", "std", "channel_order", "units")
HELP = ("resize=S (short side, or 'none' to squash), crop=N or HxW, interpolation=" + "|".join(INTERPOLATIONS)
        + ", mean=M[,M,M], std=S[,S,S], channel_order=RGB|BGR, units=unit|pixel")
SOURCE = "--preprocess"


def parse_preprocess(value: str | dict | Path) -> dict:
    """``value`` -> a checked dict of the keys given (only those; the spec keeps the rest). Raises a one-line
    ``EdgekitError`` for an unknown key, a non-number, an unknown interpolation or a crop above the resize."""
    if isinstance(value, dict):
        raw = dict(value)
    elif isinstance(value, Path) or (isinstance(value, str) and "=" not in value):
        raw = _read_yaml(Path(value))
    else:
        raw = _parse_string(value)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise EdgekitError(f"--preprocess: unknown key '{unknown[0]}'", f"keys: {HELP}")
    if not raw:
        raise EdgekitError("--preprocess is empty", f"keys: {HELP}")
    out: dict = {}
    if "resize" in raw:
        out["resize"] = None if str(raw["resize"]).strip().lower() in ("none", "squash", "") else \
            _positive_int("resize", raw["resize"])
    if "crop" in raw:
        out["crop"] = _crop(raw["crop"])
    if "interpolation" in raw:
        interp = str(raw["interpolation"]).strip().lower()
        if interp not in INTERPOLATIONS:
            raise EdgekitError(f"--preprocess: interpolation '{raw['interpolation']}' is not one of "
                               f"{', '.join(INTERPOLATIONS)}")
        out["interpolation"] = interp
    if "channel_order" in raw:
        order = str(raw["channel_order"]).strip().upper()
        if order not in ("RGB", "BGR"):
            raise EdgekitError(f"--preprocess: channel_order '{raw['channel_order']}' is not RGB or BGR")
        out["channel_order"] = order
    units = str(raw.get("units", "auto")).strip().lower()
    if units not in ("auto", "unit", "pixel"):
        raise EdgekitError(f"--preprocess: units '{raw['units']}' is not unit (0..1) or pixel (0..255)")
    values = {k: _numbers(k, raw[k]) for k in ("mean", "std") if k in raw}
    if any(v <= 0 for v in values.get("std", ())):
        raise EdgekitError(f"--preprocess: std {list(values['std'])} must be positive")
    pixel = units == "pixel" or (units == "auto" and any(abs(v) > 1 for vs in values.values() for v in vs))
    for k, vs in values.items():
        out[k] = tuple(v / 255.0 for v in vs) if pixel else vs
    resize, crop = out.get("resize"), out.get("crop")
    if resize is not None and crop is not None and max(crop) > resize:
        raise EdgekitError(f"--preprocess: crop {crop[0]}x{crop[1]} is larger than resize={resize}",
                           "the short side is resized first, then the centre crop is taken: crop <= resize")
    return out


def apply_preprocess(spec: ModelSpec, pre: dict) -> ModelSpec:
    """``spec`` with the parsed preprocessing applied; mean/std must have 1 value or one per channel."""
    for key in ("mean", "std"):
        if key in pre and len(pre[key]) not in (1, spec.channels):
            raise EdgekitError(f"--preprocess: {key} has {len(pre[key])} values but the model takes "
                               f"{spec.channels} channel{'s' if spec.channels != 1 else ''}",
                               f"give 1 value or {spec.channels}")
    update: dict = {k: pre[k] for k in ("resize", "interpolation", "mean", "std") if k in pre}
    if "crop" in pre:
        update["input_shape"] = (spec.channels, *pre["crop"])
    if "channel_order" in pre and spec.channels == 3:
        update["channel_order"] = pre["channel_order"]
    update["transform_from"] = SOURCE
    new = spec.model_copy(update=update)
    if new.resize is not None and new.resize < min(new.hw):
        raise EdgekitError(f"--preprocess: resize={new.resize} is smaller than the crop {new.hw[0]}x{new.hw[1]}",
                           "give crop= too, or a resize at least the input size")
    return new


def describe(spec: ModelSpec) -> str:
    """One line for notes: the file -> input recipe the spec now holds."""
    t = spec.transform()
    resize = f"short side {t['resize']} ({t['interpolation']}) + centre crop" if t["resize"] else "squash"
    return (f"{resize} {t['crop'][0]}x{t['crop'][1]}, {t['channel_order']}, (px - {_fmt(t['mean'], 255)}) / "
            f"{_fmt(t['std'], 255)} in 0..255 pixels")


def _fmt(values, scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]" if len(set(values)) > 1 else f"{values[0]:.4g}"


def _parse_string(text: str) -> dict:
    """``k=v,k=v1,v2,...``: a piece without '=' continues the previous key's list (per-channel values)."""
    raw: dict = {}
    key = None
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if "=" in piece:
            key, _, val = piece.partition("=")
            key = key.strip().lower()
            if key in raw:
                raise EdgekitError(f"--preprocess: key '{key}' given twice")
            raw[key] = [val.strip()]
        elif key is None:
            raise EdgekitError(f"--preprocess: '{piece}' is not key=value", f"keys: {HELP}")
        else:
            raw[key].append(piece)
    return {k: v[0] if len(v) == 1 else v for k, v in raw.items()}


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise EdgekitError(f"--preprocess {path}: not key=value pairs and no such file",
                           f"give e.g. resize=256,crop=224,mean=127,std=128 or a YAML file with keys {HELP}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise EdgekitError(f"--preprocess {path} is not valid YAML ({type(err).__name__})") from None
    if not isinstance(raw, dict):
        raise EdgekitError(f"--preprocess {path} must be a mapping of keys to values", f"keys: {HELP}")
    return {str(k).lower(): v for k, v in raw.items()}


def _positive_int(key: str, value) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EdgekitError(f"--preprocess: {key}={value!r} is not a number") from None
    if number != int(number) or number <= 0:
        raise EdgekitError(f"--preprocess: {key}={value!r} must be a positive whole number of pixels")
    return int(number)


def _crop(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return _positive_int("crop", value[0]), _positive_int("crop", value[1])
    text = str(value).lower()
    if "x" in text:
        h, _, w = text.partition("x")
        return _positive_int("crop", h), _positive_int("crop", w)
    n = _positive_int("crop", value)
    return n, n


def _numbers(key: str, value) -> tuple[float, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise EdgekitError(f"--preprocess: {key}={','.join(map(str, items))} is not a number "
                           "(or a comma-separated list of numbers)") from None
    if not numbers or any(n != n for n in numbers):
        raise EdgekitError(f"--preprocess: {key} has no usable number")
    return numbers

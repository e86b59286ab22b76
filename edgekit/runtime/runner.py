"""The benchmark runner: ``python3 -m edgekit_runtime.runner job.json --out results.json``.

``edgekit bench`` copies this package (stdlib + numpy + the artifact's runtime; no torch, no edgekit)
into a work folder as ``edgekit_runtime/`` - on this host, or over SSH on a Jetson / Raspberry Pi /
Intel box - runs this entry there and reads the JSON it writes, so local and device numbers come from
the same files.

Job file (JSON)::

    {"artifacts": [{"name", "runtime", "precision", "path", "files", "layout", "input_shape", "meta"}],
     "data": "eval.npz" | null,          # inputs (N,C,H,W float32, model-ready) + labels
     "images": ["imgs/0.jpg", ...],      # or raw image files (relative to the job's folder) + "labels" and
     "labels": [3, ...], "transform": {...},   # the spec's transform, preprocessed here (preprocess.py)
     "warmup": 10, "runs": 100, "max_seconds": 5.0, "batch": 1, "batch_sizes": [1, 8],
     "threads": 4, "eval_batch": 64, "engine_cache": "~/.cache/edgekit/trt"}

Output: ``--out results.json`` {"device": {...}, "results": {artifact name: {...}}}; progress as
JSON lines on stdout. Exit code 0 ok, 4 when no artifact could run because a runtime is missing.

On an emulated machine (``device.emulated``, e.g. an aarch64 Python under QEMU user mode) every latency
carries ``"emulated"``: accuracy there is the emulated ISA's kernels', latency is no device's. An artifact
whose runtime cannot run under that emulator is ``{"skipped": why}``, not an error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import EXIT_MISSING_RUNTIME, MissingRuntime, open_session
from .identity import cpuinfo_matches_machine, device_identity
from .measure import accuracy_counts, measure_latency, peak_memory_mb, reset_peak_memory, rss_mb
from .preprocess import preprocess_files

RUNNER_VERSION = 2


def emit(event: dict) -> None:
    """One JSON line on stdout: the caller turns these into a progress bar."""
    print(json.dumps(event), flush=True)


def batches(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]


def _tile(pool: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // len(pool))
    return np.ascontiguousarray(np.concatenate([pool] * reps)[:n] if reps > 1 else pool[:n])


def emulation_skip(art: dict, device: dict) -> str | None:
    """Why ``art`` cannot run on this emulated machine (None: it can, or the machine is not emulated)."""
    if device.get("emulated") == "qemu-user" and art["runtime"] == "onnxruntime" and not cpuinfo_matches_machine():
        # pytorch/cpuinfo in ONNX Runtime finds no processor of its architecture and crashes on import,
        # which would take every other artifact's result down with this process.
        return (f"ONNX Runtime crashes under QEMU user mode when /proc/cpuinfo is the host's, not a "
                f"{device.get('machine')} CPU's (QEMU < 8.2); .ci/emulated-pi.sh's wrapper mounts one where it may")
    return None


def bench_artifact(art: dict, root: Path, job: dict, data: dict | None, emulated: str | None = None) -> dict:
    """Accuracy, latency, throughput at batch sizes and peak memory of one artifact."""
    name = art["name"]
    peak_is_per_artifact = reset_peak_memory()
    rss_before = rss_mb()
    t0 = time.perf_counter()
    threads = int(job.get("threads") or os.cpu_count() or 1)
    session = open_session(art, root, threads, job.get("engine_cache"))
    result: dict = {"load_seconds": round(time.perf_counter() - t0, 3), "session": session.info}
    try:
        shape = [int(v) for v in art["input_shape"]]
        limit = session.max_batch or sys.maxsize
        eval_batch = min(int(job.get("eval_batch", 64)), limit)
        if data is not None:
            emit({"event": "phase", "artifact": name, "phase": "accuracy"})
            logits = np.concatenate([session.run(x) for x in batches(data["inputs"], eval_batch)])
            labels = data["labels"]
            result["accuracy"] = {**accuracy_counts(logits, labels), "samples": int(len(labels))}
            result["predictions_sha256"] = hashlib.sha256(logits.argmax(1).astype(np.int64).tobytes()).hexdigest()[:16]
            pool = data["inputs"]
        else:
            pool = np.random.default_rng(0).standard_normal((max(job.get("batch_sizes") or [1]), *shape)).astype(np.float32)
        batch = int(job.get("batch", 1))
        emit({"event": "phase", "artifact": name, "phase": "latency"})
        result["latency"] = {**measure_latency(session.run, _tile(pool, batch), int(job.get("warmup", 10)),
                                               int(job.get("runs", 100)), float(job.get("max_seconds", 5.0))),
                             "threads": session.info.get("threads"), "measured": job.get("where", "host"),
                             **({"emulated": emulated} if emulated else {})}
        throughput = []
        beyond = [b for b in job.get("batch_sizes") or [] if b > limit]
        if beyond:
            result["throughput_skipped"] = {"batches": beyond, "why": f"the file takes at most {limit} image(s) at "
                                                                      "a time (its batch or optimization profile)"}
        for b in [b for b in job.get("batch_sizes") or [] if b <= limit]:
            emit({"event": "phase", "artifact": name, "phase": f"throughput b={b}"})
            stats = measure_latency(session.run, _tile(pool, b), max(2, int(job.get("warmup", 10)) // 3),
                                    max(10, int(job.get("runs", 100)) // 4), float(job.get("max_seconds", 5.0)) / 2)
            # from the median batch time: a few slow runs on a shared machine should not set throughput
            throughput.append({"batch": b, "mean_ms": stats["mean_ms"], "p50_ms": stats["p50_ms"],
                               "runs": stats["runs"], "images_per_s": round(b * 1000.0 / stats["p50_ms"], 2)})
        result["throughput"] = throughput
        result["memory"] = {"peak_rss_mb": peak_memory_mb(), "rss_before_load_mb": rss_before,
                            "peak_is_per_artifact": peak_is_per_artifact}
        return result
    finally:
        session.close()


def load_images(job: dict, job_dir: Path) -> dict:
    """Raw image files -> model inputs on this device, with the same preprocessing as the host's data path."""
    images = job["images"]
    labels = job.get("labels") or [-1] * len(images)
    return {"inputs": preprocess_files([job_dir / p for p in images], job["transform"]),
            "labels": np.asarray(labels, dtype=np.int64)}


def run_job(job: dict, job_dir: Path) -> tuple[dict, int]:
    """Artifact paths are relative to ``artifact_root`` (default: the job's folder), data to the job's folder."""
    root = job_dir / job.get("artifact_root", ".")
    data = None
    if job.get("data"):
        with np.load(job_dir / job["data"]) as z:
            data = {"inputs": z["inputs"].astype(np.float32), "labels": z["labels"].astype(np.int64)}
    elif job.get("images"):
        data = load_images(job, job_dir)
    results, missing = {}, []
    artifacts = job["artifacts"]
    device = device_identity()
    for i, art in enumerate(artifacts):
        emit({"event": "start", "artifact": art["name"], "index": i, "total": len(artifacts)})
        skip = emulation_skip(art, device)
        try:
            if skip:
                results[art["name"]] = {"skipped": skip}
            else:
                results[art["name"]] = bench_artifact(art, root, job, data, device.get("emulated"))
        except MissingRuntime as err:
            missing.append(err)
            results[art["name"]] = {"error": str(err), "missing_runtime": err.runtime, "install": err.package}
        except Exception as err:  # noqa: BLE001 - one broken artifact must not hide the others' numbers
            first = (str(err).strip().splitlines() or [""])[0][:300]
            results[art["name"]] = {"error": f"{type(err).__name__}: {first}"}
        emit({"event": "done", "artifact": art["name"], "index": i, "total": len(artifacts)})
    code = EXIT_MISSING_RUNTIME if artifacts and len(missing) == len(artifacts) else 0
    return {"runner_version": RUNNER_VERSION, "device": device, "results": results}, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="edgekit benchmark runner (stdlib + numpy + runtime)")
    parser.add_argument("job", help="job JSON file; artifact paths are relative to its folder")
    parser.add_argument("--out", required=True, help="where to write the results JSON")
    args = parser.parse_args(argv)
    job_path = Path(args.job)
    job = json.loads(job_path.read_text())
    output, code = run_job(job, job_path.parent)
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(output, indent=2))
    os.replace(tmp, args.out)
    return code


if __name__ == "__main__":
    sys.exit(main())

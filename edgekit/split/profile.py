"""``edgekit split-profile``: end-to-end latency vs link bandwidth for three ways to deploy.

- local: the whole model on the device;
- full offload: the device JPEG-encodes the image (quality 95), sends it, the server decodes and runs
  the whole model;
- split: the device runs the head and quantizes, sends the uint8 bottleneck, the server runs the tail.

Compute times are measured through the bundle's runtimes on this host. The server is this host
(measured). The device is measured when the target is reachable locally; otherwise its times are
*estimated* from the host measurements scaled by the ratio of peak FP32 throughput (host target's
``peak_gops`` / device target's) and labelled so. The network is modelled: RTT + bytes / bandwidth
(uplink payload and downlink logits; HTTP headers are not counted). ``split-run`` measures a real link.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.profiling.latency import measure_latency
from edgekit.split.bundle import load_split_bundle
from edgekit.split.deploy import dequantize, quantize
from edgekit.target import load_target

HOST_TARGET = "x86-cpu"


def parse_bandwidths(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise EdgekitError(f"--bandwidths {text!r} is not a list of positive Mbit/s", "e.g. --bandwidths 1,5,20,100")
    return values


def _time_ms(fn, sample, runs: int = 50) -> float:
    return measure_latency(fn, sample, warmup=5, runs=runs, max_seconds=3.0)["p50_ms"]


def transfer_ms(payload_bytes: float, reply_bytes: float, bandwidth_mbps: float, rtt_ms: float) -> float:
    return rtt_ms + (payload_bytes + reply_bytes) * 8 / (bandwidth_mbps * 1e6) * 1e3


def profile_split(bundle_dir: Path, bandwidths: list[float], target_name: str | None, rtt_ms: float, out: Path,
                  threads: int = 1) -> dict:
    from PIL import Image

    bundle = load_split_bundle(bundle_dir)
    target = load_target(target_name) if target_name else bundle.manifest.target
    host = load_target(HOST_TARGET)
    spec = bundle.spec
    stage = bundle.split.stage
    rng = np.random.default_rng(0)
    c, h, w = spec.input_shape
    raw = rng.integers(0, 256, size=(1, c, h, w), dtype=np.uint8)
    x = ((raw.astype(np.float32) / 255.0 - 0.5) / 0.25).astype(np.float32)

    full = bundle.session(bundle.full_artifact(), threads)
    head = bundle.session(bundle.head_artifact(), threads)
    tail = bundle.session(bundle.tail_artifact(), threads)
    try:
        z = head.run(x)
        host_ms = {
            "full": _time_ms(full.run, x),
            "head": _time_ms(head.run, x) + _time_ms(lambda a: quantize(a, bundle.scale, bundle.zero_point), z),
            "tail": _time_ms(lambda a: tail.run(dequantize(quantize(a, bundle.scale, bundle.zero_point),
                                                           bundle.scale, bundle.zero_point)), z),
        }
    finally:
        for s in (full, head, tail):
            s.close()
    pil = Image.fromarray(raw[0, 0]) if c == 1 else Image.fromarray(np.moveaxis(raw[0], 0, -1))

    def encode(_):
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=95)
        return buf.getvalue()

    jpeg = encode(None)
    host_ms["jpeg_encode"] = _time_ms(encode, raw)
    host_ms["jpeg_decode"] = _time_ms(lambda _: np.asarray(Image.open(io.BytesIO(jpeg)).convert("L" if c == 1 else "RGB")), raw)

    measured_device = target.reach == "local"
    if measured_device:
        factor, device_label = 1.0, "measured"
    else:
        host_peak, device_peak = host.device.peak_gops.get("fp32"), target.device.peak_gops.get("fp32")
        if not host_peak or not device_peak:
            raise EdgekitError(f"target {target.name} has no device.peak_gops.fp32 to estimate its latency")
        factor = host_peak / device_peak
        device_label = f"estimated (host measurement x {factor:.2f}, peak FP32 {host_peak:g}/{device_peak:g} GOPS)"
    device = {k: host_ms[k] * factor for k in ("full", "head", "jpeg_encode")}
    jpeg_bytes = float(stage.get("input_bytes_jpeg95") or len(jpeg))
    bottleneck_bytes = float(bundle.split.bottleneck.bytes_per_image)
    reply = 4.0 * spec.num_classes
    rows = []
    for bw in bandwidths:
        local = device["full"]
        offload = device["jpeg_encode"] + transfer_ms(jpeg_bytes, reply, bw, rtt_ms) + host_ms["jpeg_decode"] + host_ms["full"]
        split = device["head"] + transfer_ms(bottleneck_bytes, reply, bw, rtt_ms) + host_ms["tail"]
        best = min((local, "local"), (offload, "offload"), (split, "split"))[1]
        rows.append({"bandwidth_mbps": bw, "local_ms": local, "offload_jpeg_ms": offload, "split_ms": split,
                     "best": best})
    out.mkdir(parents=True, exist_ok=True)
    result = {"bundle": str(bundle_dir), "target": target.name, "device_compute": device_label,
              "server_compute": f"measured on this host ({HOST_TARGET})", "network": "modelled: RTT + bytes/bandwidth",
              "rtt_ms": rtt_ms, "bytes": {"bottleneck": bottleneck_bytes, "jpeg95": jpeg_bytes,
                                          "raw": float(stage.get("input_bytes_raw") or raw.size)},
              "host_ms": host_ms, "device_ms": device, "threads": threads, "rows": rows,
              "plot": str(out / "split_profile.png"), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _plot(result, out / "split_profile.png")
    (out / "split_profile.json").write_text(json.dumps(result, indent=2))
    (out / "split_profile.md").write_text(render_markdown(result))
    return result


def render_markdown(result: dict) -> str:
    lines = [f"# split profile: {result['target']}", "",
             f"- device compute: {result['device_compute']}", f"- server compute: {result['server_compute']}",
             f"- network: {result['network']} (RTT {result['rtt_ms']} ms)",
             f"- bytes/image: bottleneck {result['bytes']['bottleneck']:.0f}, JPEG-95 {result['bytes']['jpeg95']:.0f}, "
             f"raw {result['bytes']['raw']:.0f}", "",
             "| Mbit/s | local ms | offload JPEG ms | split ms | best |", "|---|---|---|---|---|"]
    lines += [f"| {r['bandwidth_mbps']:g} | {r['local_ms']:.2f} | {r['offload_jpeg_ms']:.2f} | {r['split_ms']:.2f} | "
              f"{r['best']} |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bws = [r["bandwidth_mbps"] for r in result["rows"]]
    estimated = not result["device_compute"].startswith("measured")
    suffix = " (estimated device)" if estimated else ""
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("local_ms", "local"), ("offload_jpeg_ms", "full offload (JPEG)"), ("split_ms", "split")):
        ax.plot(bws, [r[key] for r in result["rows"]], marker="o", linestyle="--" if estimated else "-",
                label=label + suffix)
    ax.set_xscale("log")
    ax.set_xlabel("link bandwidth (Mbit/s)")
    ax.set_ylabel("end-to-end latency per image (ms)")
    ax.set_title(f"{result['target']}: RTT {result['rtt_ms']:g} ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

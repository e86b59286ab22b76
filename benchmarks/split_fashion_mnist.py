"""Split computing (issue 5) on Fashion-MNIST with a ResNet-style teacher.

1. Accuracy/size: the split pair's test top-1 (through the runtimes: head -> uint8 -> tail) is within
   1.0 point of the teacher's, with the 8-bit bottleneck <= 25% of the raw input bytes.
2. Latency over a shaped link: two network namespaces joined by a veth pair, each direction shaped to
   5 Mbit/s with 10 ms delay (20 ms RTT) by tc netem (where the kernel lacks netem: tc tbf at 5 Mbit/s
   with a small MTU, no delay; see edgekit/split/netns.py); the tail server runs in one namespace, the head
   in the other; split and full offload of the raw image are measured interleaved in one run.

    python -m benchmarks run split-fashion-mnist [--set teacher=builtin:resnet20] [--set skip_link=true]
    python -m benchmarks run split-profile-rpi4        # split-profile of that scenario's bundle

The teacher is trained once (full epochs, bf16) and cached under benchmarks/cache/ (gitignored).
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.schema import Measured
from edgekit.errors import EdgekitError

CACHE = Path(__file__).resolve().parent / "cache"


def accuracy_phase(teacher: Path, recipe: str, bundle: Path) -> dict:
    from edgekit.models import load_model
    from edgekit.data import load_data
    import edgekit
    from edgekit.training import evaluate_module

    manifest = edgekit.compress(str(teacher), "fashion-mnist", target="x86-cpu", recipe=str(recipe), out=bundle,
                                force=True).manifest.as_json()
    split = manifest["split"]
    stage = split["stage"]
    t = load_model(str(teacher))
    teacher_top1 = evaluate_module(t.module, t.spec, load_data("fashion-mnist", image_size=t.spec.hw).test)["top1"]
    pair = {a["name"]: a["metrics"].get("split_accuracy", {}).get("top1") for a in manifest["artifacts"]
            if a.get("meta", {}).get("split_part") == "head"}
    pair_top1 = pair.get("head-onnxruntime-fp32")
    return {"teacher_test_top1": teacher_top1, "split_pair_test_top1": pair, "split_pytorch_test_top1":
            manifest["references"]["final"]["accuracy"]["top1"], "drop_points": teacher_top1 - pair_top1,
            "bottleneck_shape": split["bottleneck"]["shape"], "bottleneck_bytes": split["bottleneck"]["bytes_per_image"],
            "input_bytes_raw": stage["input_bytes_raw"], "input_bytes_jpeg95": stage["input_bytes_jpeg95"],
            "bottleneck_ratio_raw": stage["bottleneck_ratio_raw"], "bottleneck_ratio_jpeg95": stage["bottleneck_ratio_jpeg95"],
            "quantization": split["bottleneck"]["quantization"],
            "head_params": stage["head_params"], "head_macs": stage["head_macs"], "teacher_params": stage["teacher_params"],
            "teacher_macs": stage["teacher_macs"], "tail_macs": stage["tail_macs"],
            "val_top1_after_head_distillation": stage["val_top1_after_head_distillation"],
            "stage_seconds": manifest["stages"][0]["seconds"], "cached": manifest["stages"][0]["cached"]}


def link_phase(bundle: Path, images: int, rate_mbit: float, delay_ms: float) -> dict:
    from edgekit.split.netns import ShapedLink, netns_unavailable_reason

    reason = netns_unavailable_reason()
    if reason:
        return {"skipped": reason}
    with ShapedLink(rate_mbit=rate_mbit, delay_ms=delay_ms) as link:
        result = link.split_run(bundle, data="fashion-mnist", limit=images, offload="raw")
    modes = result["modes"]
    split_p50, offload_p50 = modes["split"]["e2e_ms"]["p50_ms"], modes["offload_raw"]["e2e_ms"]["p50_ms"]
    netem = result["link"].startswith("netem")
    return {"link": {"rate_mbit": rate_mbit, "delay_ms_each_way": delay_ms if netem else 0.0,
                     "rtt_ms": 2 * delay_ms if netem else 0.0,
                     "shaping": f"two network namespaces, veth pair, tc {result['link']}"},
            "split_run": result, "split_e2e_p50_ms": split_p50, "offload_raw_e2e_p50_ms": offload_p50,
            "split_e2e_mean_ms": modes["split"]["e2e_ms"]["mean_ms"],
            "offload_raw_e2e_mean_ms": modes["offload_raw"]["e2e_ms"]["mean_ms"]}


def run(work: Path, teacher: str = "builtin:resnet20", teacher_epochs: int = 3,
        recipe: str = "split-fashion-mnist", images: int = 300, skip_link: bool = False) -> Measured:
    """The kind ``split``: the accuracy phase (the bundle is kept in ``work``/bundle, where the split_profile
    scenarios read it), then the shaped-link phase over ``images`` test images unless ``skip_link``."""
    from benchmarks._teacher import teacher_checkpoint

    os.environ.setdefault("EDGEKIT_CACHE", str(CACHE / "edgekit"))
    bundle = work / "bundle"
    result: dict = {"teacher_arch": teacher, "teacher_epochs": teacher_epochs, "recipe": recipe}
    result["accuracy"] = accuracy_phase(teacher_checkpoint(teacher, teacher_epochs, steps=None, fast=True),
                                        recipe, bundle)
    if not skip_link:
        result["link"] = link_phase(bundle, images, 5.0, 10.0)
    return summarize(result)


def summarize(r: dict) -> Measured:
    """Rows: the link's modes (when it ran); the accuracy phase as metrics."""
    a = r["accuracy"]
    metrics = {"teacher_test_top1": a["teacher_test_top1"],
               "split_pair_test_top1": a["split_pair_test_top1"].get("head-onnxruntime-fp32"),
               "drop_pt": round(a["drop_points"], 3), "bottleneck_bytes": a["bottleneck_bytes"],
               "input_bytes_raw": a["input_bytes_raw"], "input_bytes_jpeg95": a["input_bytes_jpeg95"],
               "bottleneck_ratio_raw": a["bottleneck_ratio_raw"], "head_params": a["head_params"],
               "head_macs": a["head_macs"], "teacher_macs": a["teacher_macs"]}
    notes = [f"teacher `{r['teacher_arch']}` ({r.get('teacher_epochs', '?')} epochs), recipe `{r['recipe']}`; split "
             f"pair = ONNX Runtime head -> uint8 bottleneck {a['bottleneck_shape']} -> ONNX Runtime tail"]
    rows = []
    link = r.get("link")
    if link and "skipped" in link:
        notes.append(f"shaped link: skipped ({link['skipped']})")
    elif link:
        notes.append(f"shaped link: {link['link']['rate_mbit']} Mbit/s, RTT {link['link']['rtt_ms']} ms "
                     f"({link['link']['shaping']})")
        rows = [{"mode": mode, "top1": m["accuracy"]["top1"], "bytes_per_image": m["bytes_per_image"],
                 "e2e_p50_ms": m["e2e_ms"]["p50_ms"], "e2e_mean_ms": m["e2e_ms"]["mean_ms"]}
                for mode, m in link["split_run"]["modes"].items()]
        metrics["split_faster_than_raw_offload"] = link["split_e2e_p50_ms"] < link["offload_raw_e2e_p50_ms"]
    return Measured(rows=rows, metrics=metrics, notes=notes,
                    details={"accuracy": {k: v for k, v in a.items() if k != "bars"},
                             "link": {k: v for k, v in (link or {}).items() if k != "bars"}})


def profile(work: Path, target: str = "x86-cpu", bundle: str | None = None, bandwidths: list[float] | None = None,
            rtt_ms: float = 20.0, threads: int = 1) -> Measured:
    """The kind ``split_profile``: ``edgekit split-profile`` on a split bundle [default: the split-fashion-mnist
    scenario's], end-to-end latency of local, full offload and split against the link's bandwidth."""
    from edgekit.split.profile import profile_split

    bundle_dir = Path(bundle) if bundle else CACHE / "split-fashion-mnist" / "bundle"
    if not (bundle_dir / "manifest.json").is_file():
        raise EdgekitError(f"no split bundle at {bundle_dir}",
                           "run python -m benchmarks run split-fashion-mnist first, or --set bundle=PATH")
    return profile_summary(profile_split(bundle_dir, bandwidths or [1.0, 5.0, 20.0, 100.0], target, rtt_ms,
                                         work / "profile", threads))


def profile_summary(r: dict) -> Measured:
    return Measured(rows=r["rows"], details={k: r[k] for k in ("bundle", "target", "bytes", "host_ms", "device_ms")},
                    notes=[f"target {r['target']}: device compute {r['device_compute']}; server compute "
                           f"{r['server_compute']}; network {r['network']}, RTT {r['rtt_ms']} ms; {r['threads']} "
                           "thread(s)"])

"""Split-computing bars (issue 5) on Fashion-MNIST with a ResNet-style teacher.

1. Accuracy/size: the split pair's test top-1 (through the runtimes: head -> uint8 -> tail) is within
   1.0 point of the teacher's, with the 8-bit bottleneck <= 25% of the raw input bytes.
2. Latency over a shaped link: two network namespaces joined by a veth pair, each direction shaped to
   5 Mbit/s with 10 ms delay (20 ms RTT) by tc netem (where the kernel lacks netem: tc tbf at 5 Mbit/s
   with a small MTU, no delay; see edgekit/split/netns.py); the tail server runs in one namespace, the head
   in the other; split and full offload of the raw image are measured interleaved in one run.

    python benchmarks/split_fashion_mnist.py [--teacher builtin:resnet20] [--teacher-epochs 3] [--skip-link]

The teacher is trained once (full epochs, bf16) and cached under benchmarks/cache/ (gitignored). Writes
benchmarks/results/split_fashion_mnist.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # this checkout's edgekit, not an installed one
CACHE = ROOT / "benchmarks" / "cache"


def accuracy_phase(teacher: Path, recipe: Path, bundle: Path) -> dict:
    from edgekit.models import load_model
    from edgekit.data import load_data
    from edgekit.pipeline import CompressOptions, compress
    from edgekit.training import evaluate_module

    manifest = compress(CompressOptions(model=str(teacher), data="fashion-mnist", recipe=str(recipe), target="x86-cpu",
                                        out=bundle, force=True)).as_json()
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
            "stage_seconds": manifest["stages"][0]["seconds"], "cached": manifest["stages"][0]["cached"],
            "bars": {"within_1.0_point": teacher_top1 - pair_top1 <= 1.0,
                     "bottleneck_<=25%_raw": stage["bottleneck_ratio_raw"] <= 0.25}}


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
            "offload_raw_e2e_mean_ms": modes["offload_raw"]["e2e_ms"]["mean_ms"],
            "bars": {"split_faster_than_raw_offload_at_5mbit": split_p50 < offload_p50}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="builtin:resnet20")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "split-fashion-mnist.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--skip-link", action="store_true")
    parser.add_argument("--skip-train", action="store_true", help="reuse the bundle from a previous run")
    args = parser.parse_args()
    os.environ.setdefault("EDGEKIT_CACHE", str(CACHE / "edgekit"))
    bundle = args.out / "bundles" / "split_fashion_mnist"
    started = time.time()
    from benchmarks._teacher import teacher_checkpoint

    result: dict = {"teacher_arch": args.teacher, "teacher_epochs": args.teacher_epochs, "recipe": str(args.recipe.relative_to(ROOT))}
    json_path = args.out / "split_fashion_mnist.json"
    if args.skip_train and json_path.exists():
        result = json.loads(json_path.read_text())
    else:
        result["accuracy"] = accuracy_phase(teacher_checkpoint(args.teacher, args.teacher_epochs, steps=None, fast=True),
                                            args.recipe, bundle)
    if not args.skip_link:
        result["link"] = link_phase(bundle, args.images, 5.0, 10.0)
    from edgekit.profiling.latency import host_identity

    result["host"] = host_identity()
    result["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=2, default=str))
    (args.out / "split_fashion_mnist.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    a = r.get("accuracy", {})
    lines = ["# Split computing on Fashion-MNIST (issue 5)", "",
             f"teacher `{r['teacher_arch']}` ({r.get('teacher_epochs', '?')} epochs), recipe `{r['recipe']}`", ""]
    if a:
        lines += ["| metric | value |", "|---|---|",
                  f"| teacher test top-1 | {a['teacher_test_top1']:.2f}% |",
                  f"| split pair test top-1 (ORT head -> uint8 -> ORT tail) | {a['split_pair_test_top1'].get('head-onnxruntime-fp32'):.2f}% |",
                  f"| drop | {a['drop_points']:.2f} points (bar <= 1.0: {'met' if a['bars']['within_1.0_point'] else 'NOT met'}) |",
                  f"| bottleneck | {a['bottleneck_shape']} uint8 = {a['bottleneck_bytes']} B/image |",
                  f"| raw input / JPEG-95 | {a['input_bytes_raw']:.0f} B / {a['input_bytes_jpeg95']:.0f} B |",
                  f"| bottleneck / raw | {100 * a['bottleneck_ratio_raw']:.1f}% (bar <= 25%: "
                  f"{'met' if a['bars']['bottleneck_<=25%_raw'] else 'NOT met'}) |",
                  f"| head params / MACs | {a['head_params']:,} / {a['head_macs'] / 1e6:.2f} M "
                  f"(teacher {a['teacher_params']:,} / {a['teacher_macs'] / 1e6:.2f} M) |", ""]
    link = r.get("link")
    if link and "skipped" in link:
        lines += [f"shaped link: skipped — {link['skipped']}", ""]
    elif link:
        lines += [f"## Shaped link: {link['link']['rate_mbit']} Mbit/s, RTT {link['link']['rtt_ms']} ms "
                  f"({link['link']['shaping']})", "",
                  "| mode | top-1 % | bytes/image | e2e p50 ms | e2e mean ms |", "|---|---|---|---|---|"]
        for mode, m in link["split_run"]["modes"].items():
            lines.append(f"| {mode} | {m['accuracy']['top1']:.2f} | {m['bytes_per_image']:.0f} | "
                         f"{m['e2e_ms']['p50_ms']:.2f} | {m['e2e_ms']['mean_ms']:.2f} |")
        lines += ["", f"split faster than raw offload: {'met' if link['bars']['split_faster_than_raw_offload_at_5mbit'] else 'NOT met'}", ""]
    lines.append(f"host: {r['host']['cpu']} ({r['host']['cores']} cores)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

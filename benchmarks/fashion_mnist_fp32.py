"""Foundation bar: a builtin ResNet-style model trained briefly on Fashion-MNIST reaches >= 90% top-1,
and its ONNX Runtime and OpenVINO FP32 artifacts match PyTorch accuracy within 0.1 point.

    python benchmarks/fashion_mnist_fp32.py [--model builtin:resnet20] [--out benchmarks/results]

Writes <out>/fashion_mnist_fp32.json and .md (table + machine), and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekit.pipeline import CompressOptions, compress
from edgekit.reports.markdown import render_markdown

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:resnet20")
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "fashion-mnist.yaml"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--from-bundle", type=Path, help="summarise an existing bundle instead of running compress")
    args = parser.parse_args()
    if args.from_bundle:
        manifest = json.loads((args.from_bundle / "manifest.json").read_text())
    else:
        bundle = args.out / "bundles" / "fashion_mnist_fp32"
        manifest = compress(CompressOptions(model=args.model, data="fashion-mnist", recipe=args.recipe,
                                            target="x86-cpu", out=bundle, force=True)).as_json()
    args.model = manifest["model"]["source"]
    ref = manifest["references"]["final"]["accuracy"]["top1"]
    rows = [{"artifact": a["name"], "top1": a["metrics"]["accuracy"]["top1"],
             "delta_vs_pytorch": round(a["metrics"]["accuracy"]["top1"] - ref, 3),
             "agreement": a["metrics"]["agreement"]["top1_agreement"],
             "max_abs_logit_diff": a["metrics"]["agreement"]["max_abs_logit_diff"],
             "p50_ms": a["metrics"]["latency"]["p50_ms"], "bytes": a["bytes"]} for a in manifest["artifacts"]]
    result = {"model": args.model, "pytorch_top1": ref, "artifacts": rows, "host": manifest["host"],
              "train_seconds": manifest["stages"][0]["seconds"],
              "bars": {"pytorch_top1>=90": ref >= 90,
                       "artifacts_within_0.1pt": all(abs(r["delta_vs_pytorch"]) <= 0.1 for r in rows)}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fashion_mnist_fp32.json").write_text(json.dumps(result, indent=2))
    (args.out / "fashion_mnist_fp32.md").write_text(render_markdown(manifest))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

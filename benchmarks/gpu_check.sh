#!/usr/bin/env bash
# benchmarks/gpu_check.sh: edgekit on a CUDA machine, next to the torch already installed there.
#
# 1. Checks that CUDA works (fails fast, exit 2, when it does not).
# 2. Makes edgekit importable WITHOUT replacing that torch: an editable install with --no-deps (or, when
#    the hatchling build backend is absent and there is no internet, just PYTHONPATH: edgekit is pure
#    Python), then installs only the missing pure-Python dependencies, constrained to the torch /
#    torchvision versions present (pyproject's floor, torch>=2.4, is satisfied by them). Offline, give
#    EDGEKIT_WHEELS=/path/to/wheels (pip install --no-index --find-links).
# 3. Writes a folder of 224 px-class JPEGs and runs `edgekit compress --device cuda` with a prune + distill
#    recipe on torchvision:resnet18 (random init, the DEFAULT weights' transform) for STEPS distill steps.
# 4. Prints images/s, GPU memory (torch.cuda.max_memory_allocated) and the bundle's table.
# Budget: under 8 minutes on one recent GPU.
#
#   benchmarks/gpu_check.sh                     # PYTHON=python3 STEPS=300 IMAGES=2000 WORK=$(mktemp -d)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
STEPS="${STEPS:-300}"
IMAGES="${IMAGES:-2000}"
BATCH="${BATCH:-64}"
WORK="${WORK:-$(mktemp -d /tmp/edgekit-gpu-check.XXXXXX)}"
WHEELS="${EDGEKIT_WHEELS:-}"
START=$(date +%s)
mkdir -p "$WORK"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: CUDA is not available to $PY (no torch, a CPU-only torch, or no visible GPU); nothing to check" >&2
    exit 2
fi
"$PY" -c 'import torch; print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {torch.cuda.get_device_name(0)}")'

# --- edgekit without touching torch --------------------------------------------------------------------
"$PY" - > "$WORK/keep-torch.txt" <<'PYEOF'
import importlib.metadata as md
for name in ("torch", "torchvision", "triton"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        pass
PYEOF
echo "keeping: $(tr '\n' ' ' < "$WORK/keep-torch.txt")"
if "$PY" -c 'import hatchling' 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
else
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    echo "hatchling absent: using edgekit from $ROOT via PYTHONPATH (no install needed, it is pure Python)"
fi
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = {"pydantic": "pydantic", "yaml": "pyyaml", "typer": "typer", "rich": "rich", "PIL": "pillow",
        "sklearn": "scikit-learn", "platformdirs": "platformdirs", "torchvision": "torchvision", "onnx": "onnx",
        "onnxruntime": "onnxruntime", "onnxscript": "onnxscript", "torch_pruning": "torch-pruning"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$missing" ]; then
    echo "installing missing dependencies: $missing"
    source_args=()
    if [ -n "$WHEELS" ]; then
        source_args=(--no-index --find-links "$WHEELS")
    fi
    read -r -a packages <<< "$missing"
    if ! "$PY" -m pip install -q ${source_args[@]+"${source_args[@]}"} -c "$WORK/keep-torch.txt" "${packages[@]}"; then
        echo "gpu_check: cannot install $missing (offline? set EDGEKIT_WHEELS to a folder of wheels)" >&2
        exit 3
    fi
fi
"$PY" -c 'import edgekit, torch; print(f"edgekit {edgekit.__version__} with torch {torch.__version__}")'

# --- data and recipe -----------------------------------------------------------------------------------
cd "$ROOT"
"$PY" -c "
from pathlib import Path
from benchmarks.train_throughput import write_folder
write_folder(Path('$WORK/imgs'), $IMAGES, classes=10)
"
per_epoch=$(( IMAGES * 8 / 10 / BATCH ))
epochs=$(( (STEPS + per_epoch - 1) / per_epoch ))
cat > "$WORK/recipe.yaml" <<YAML
name: gpu-check
description: structured prune to 50% MACs, then KD from the unpruned model, on CUDA
stages:
  - prune: {mode: structured, macs: 0.5, importance: l2, scope: uniform, measure_latency: false}
  - distill: {student: self, loss: kd, temperature: 4, alpha: 0.9, epochs: $epochs, batch_size: $BATCH, lr: 0.05, eval_limit: 256}
  - evaluate: {split: test}
compile:
  backends: [onnxruntime]
  precisions: [fp32]
profile: {warmup: 5, runs: 50, max_seconds: 3}
YAML
echo "data: $IMAGES JPEGs in $WORK/imgs; distill: $epochs epochs x $per_epoch steps of $BATCH"

# --- the run -------------------------------------------------------------------------------------------
timeout 420 "$PY" -m edgekit compress --device cuda --no-cache \
    -m 'torchvision:resnet18?weights=none&transform=DEFAULT' -d "$WORK/imgs" -r "$WORK/recipe.yaml" \
    -t x86-cpu --out "$WORK/bundle" --force | tee "$WORK/compress.log"

"$PY" - "$WORK/bundle/manifest.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
for s in m["stages"]:
    metrics = s["metrics"]
    if "images_per_s" in metrics:
        print(f"{s['name']}: {metrics['images_per_s']} images/s on {metrics['device']} ({metrics['precision']}), "
              f"{metrics['steps_per_epoch']} steps/epoch x {metrics['epochs_run']} epochs, "
              f"GPU memory max_memory_allocated {metrics['max_memory_mb']} MiB")
print(f"reference top-1 {m['reference']['accuracy']['top1']:.2f}% (random init, synthetic classes)")
PYEOF
echo "gpu_check: done in $(( $(date +%s) - START )) s; bundle: $WORK/bundle"

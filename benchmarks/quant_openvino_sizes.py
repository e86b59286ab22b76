"""OpenVINO IR size split into .xml and .bin for FP32 vs INT8 (resnet20, Fashion-MNIST): the INT8
weights (.bin) shrink ~4x, but the XML grows with the quantize/dequantize nodes.
Run: ``nice -n 10 python -m benchmarks.quant_openvino_sizes``."""
import tempfile, json
from pathlib import Path
from benchmarks.quant_train import trained
from edgekit.backends import BACKENDS, CompileRequest
from edgekit.calibration import draw_calibration
from edgekit.data import load_data
from edgekit.target import load_target
m = trained("resnet20"); d = load_data("fashion-mnist", image_size=m.spec.hw)
cal = draw_calibration(d.train, m.spec, 300, 0)
root = Path(tempfile.mkdtemp())
req = CompileRequest(out_dir=root, target=load_target("x86-cpu"), calibration=cal.inputs)
out = {}
for p in ("fp32", "int8"):
    a = BACKENDS.get("openvino")().compile(m, p, req)
    xml = root / a.path
    out[p] = {"xml": xml.stat().st_size, "bin": xml.with_suffix(".bin").stat().st_size}
out["bin_ratio"] = out["fp32"]["bin"] / out["int8"]["bin"]
out["total_ratio"] = sum(out["fp32"].values()) / sum(out["int8"].values())
print(json.dumps(out))
Path("benchmarks/results/quant_openvino_sizes.json").write_text(json.dumps({"model": "resnet20", **out}, indent=2) + "\n")

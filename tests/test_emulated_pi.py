"""An rpi4 bundle benched on an emulated Raspberry Pi (aarch64 Python under QEMU user mode) over the loopback
sshd: the runner executes the ARM kernels of LiteRT/XNNPACK, so its accuracy is checked against this host's;
its latency is labelled ``emulated`` and must never move a decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle_fixture import build_bundle
from conftest import run_cli
from edgekit.decisions import latency_for, select_precisions
from edgekit.target import load_target
from edgekit.vocab import Basis
from sshd_server import ssh_args

FAST = ["--runs", "5", "--warmup", "1", "--max-seconds", "1", "--batch-sizes", "1"]

RPI4_RECIPE = """name: emulated-pi-test
stages:
  - evaluate: {split: test}
compile:
  precisions: [fp32, int8]
profile: {warmup: 3, runs: 20, max_seconds: 1}
"""


def _artifact(name: str, precision: str, top1: float, estimate_ms: float):
    from edgekit.backends.base import Artifact

    metrics = {"accuracy": {"top1": top1}, "latency": {"p50_ms": 0.1, "measured": "host"},
               "estimate": {"latency_ms": estimate_ms, "target": "rpi4"}}
    return Artifact(name=name, backend="tflite", precision=precision, path="x", files=["x"], runtime="litert",
                    runtime_version="1", input_shape=[1, 3, 32, 32], metrics=metrics)


def test_emulated_latency_never_decides():
    """An emulated device's p50 (here: INT8 ten times faster) is shown, not used: the estimate stays the basis;
    the same numbers from a real device are."""
    rpi4 = load_target("rpi4")
    arts = [_artifact("tflite-fp32", "fp32", 90.0, 10.0), _artifact("tflite-int8", "int8", 89.9, 20.0)]
    results = {"tflite-fp32": {"latency": {"p50_ms": 300.0}}, "tflite-int8": {"latency": {"p50_ms": 30.0}}}
    emulated = {"where": "ssh://root@127.0.0.1:2222", "device": {"machine": "aarch64", "emulated": "qemu-user"},
                "results": results}
    real = {**emulated, "device": {"machine": "aarch64"}}
    assert latency_for(arts[1], rpi4, [emulated]) == (20.0, Basis.estimated("rpi4"))
    (d,) = select_precisions(arts, rpi4, 90.0, 1.0, [emulated])
    assert d.chosen == "tflite-fp32" and not d.chosen_candidate().latency_source.measured
    assert latency_for(arts[1], rpi4, [real]) == (30.0, Basis.on_device("ssh://root@127.0.0.1:2222"))
    (d,) = select_precisions(arts, rpi4, 90.0, 1.0, [real])
    assert d.chosen == "tflite-int8"


def test_the_emulated_pi_says_it_is_one(emulated_pi, tmp_path):
    """The shipped runtime package's identity, run under the wrapper (ARM /proc/cpuinfo mounted) and under bare
    QEMU (the host's x86 /proc/cpuinfo): aarch64 and emulated both ways; this host is not emulated."""
    import subprocess

    from edgekit.runtime.identity import emulation

    assert emulation() is None
    sysroot = Path(emulated_pi).parent
    code = "import json, runtime.identity as i; print(json.dumps(i.device_identity()))"
    cwd = Path(__file__).resolve().parents[1] / "edgekit"
    bare = ["qemu-aarch64-static", "-L", str(sysroot), str(sysroot / "usr/bin/python3.11")]
    for python, cpu in (([emulated_pi], "cortex-a72 (emulated)"), (bare, "max (emulated) on ")):
        out = subprocess.run([*python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)})
        assert out.returncode == 0, out.stderr[-1000:]
        device = json.loads(out.stdout)
        assert device["machine"] == "aarch64" and device["emulated"] == "qemu-user", device
        assert device["cpu"].startswith(cpu), device


@pytest.fixture(scope="module")
def rpi4_bundle(tmp_path_factory) -> Path:
    """The default digits teacher, evaluated and compiled for rpi4 (LiteRT + ONNX Runtime, FP32 + INT8)."""
    return build_bundle(tmp_path_factory.mktemp("rpi4-bundle"), "-t", "rpi4", recipe_text=RPI4_RECIPE)


@pytest.mark.slow
def test_rpi4_bundle_on_the_emulated_pi(sshd, emulated_pi, rpi4_bundle):
    bundle = rpi4_bundle
    before = json.loads((bundle / "manifest.json").read_text())
    arts = {a["name"]: a for a in before["artifacts"] if a["meta"].get("split_part") != "input"}
    litert = [n for n, a in arts.items() if a["runtime"] == "litert"]
    assert {arts[n]["precision"] for n in litert} == {"fp32", "int8"}

    # the emulated Pi has LiteRT and ONNX Runtime (ExecuTorch's Python runtime needs an aarch64 CPU torch)
    only = [arg for a in before["artifacts"] if a["runtime"] in ("litert", "onnxruntime") for arg in ("--artifact", a["name"])]
    host = run_cli("bench", str(bundle), "--json", "--no-update", *FAST, *only)
    assert host.returncode == 0, host.stderr[-2000:]
    pi = run_cli("bench", str(bundle), "--json", *FAST, *only, *ssh_args(sshd, python=emulated_pi))
    assert pi.returncode == 0, pi.stderr[-2000:]
    host, pi = json.loads(host.stdout), json.loads(pi.stdout)

    assert host["device"]["machine"] == "x86_64" and "emulated" not in host["device"]
    assert pi["device"]["machine"] == "aarch64" and pi["device"]["emulated"] == "qemu-user"
    for name in litert:
        on_pi, here = pi["results"][name], host["results"][name]
        assert on_pi["session"]["runtime_version"] != here["session"]["runtime_version"]   # 1.4.0 there
        assert on_pi["latency"]["emulated"] == "qemu-user"
        gap = abs(on_pi["accuracy"]["top1"] - here["accuracy"]["top1"])
        if arts[name]["precision"] == "fp32":
            assert gap == 0, (name, on_pi["accuracy"], here["accuracy"])
        else:   # XNNPACK's ARM INT8 kernels round differently from x86's
            assert gap <= 0.2, (name, on_pi["accuracy"], here["accuracy"])
    for name in (n for n, a in arts.items() if a["runtime"] == "onnxruntime"):
        on_pi = pi["results"][name]
        if "skipped" in on_pi:   # no mount namespace for an ARM /proc/cpuinfo here: said, not failed
            assert "QEMU user mode" in on_pi["skipped"] and "\n" not in on_pi["skipped"]
        elif arts[name]["precision"] == "fp32":
            assert on_pi["accuracy"]["top1"] == host["results"][name]["accuracy"]["top1"]

    after = json.loads((bundle / "manifest.json").read_text())
    (entry,) = [b for b in after["benchmarks"] if b["where"].startswith("ssh://")]
    assert entry["device"]["machine"] == "aarch64" and entry["device"]["emulated"] == "qemu-user"
    # emulated latency decides nothing: deploy, its basis and every precision choice are as before the bench
    assert after["deploy"] == before["deploy"]
    choices = lambda m: {a["name"]: (a["meta"].get("chosen"), a["meta"].get("selection")) for a in m["artifacts"]}  # noqa: E731
    assert choices(after) == choices(before)
    assert "measured on the device" not in json.dumps(after["deploy"])
    report = (bundle / "report.md").read_text()
    assert "(emulated: its latency decides nothing)" in report and "| emulated |" in report


@pytest.mark.slow
def test_onnxruntime_is_skipped_not_failed_where_cpuinfo_is_the_hosts(sshd, emulated_pi, rpi4_bundle, tmp_path):
    """QEMU run directly (no mount namespace for an ARM /proc/cpuinfo, as where ``unshare`` is refused): ONNX
    Runtime would crash the runner on import, so its files are skipped with the reason; LiteRT's still run."""
    sysroot = Path(emulated_pi).parent
    bare = tmp_path / "python3"
    bare.write_text(f'#!/bin/sh\nexec qemu-aarch64-static -L "{sysroot}" "{sysroot}/usr/bin/python3.11" "$@"\n')
    bare.chmod(0o755)
    r = run_cli("bench", str(rpi4_bundle), "--json", "--no-update", *FAST, "--limit", "16", "--artifact", "tflite-int8",
                "--artifact", "onnxruntime-int8", *ssh_args(sshd, python=str(bare)))
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout)["results"]
    assert results["tflite-int8"]["accuracy"]["samples"] == 16
    skipped = results["onnxruntime-int8"]["skipped"]
    assert "ONNX Runtime crashes under QEMU user mode" in skipped and "\n" not in skipped

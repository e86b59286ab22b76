"""Who measured: the machine a number comes from, as the host's manifest and a device report it."""

from __future__ import annotations

import functools
import os
import platform

import numpy as np


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return None


def device_identity() -> dict:
    """Board model (device tree on Pi/Jetson), OS, CPU, cores, Python."""
    cpu = platform.processor() or platform.machine()
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Model", "Hardware")):
            cpu = line.split(":", 1)[1].strip()
            break
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()[:40]) if v}
    os_name = f"{platform.system()} {platform.release()}"
    release = _read("/etc/os-release") or ""
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    return {"hostname": platform.node(), "model": _read("/proc/device-tree/model") or _read(
                "/sys/devices/virtual/dmi/id/product_name") or platform.machine(),
            "machine": platform.machine(), "cpu": cpu, "cores": str(os.cpu_count()), "os": os_name,
            "python": platform.python_version(), "numpy": np.__version__,
            "jetpack_l4t": (_read("/etc/nv_tegra_release") or "").split(",")[0] or None,
            **cpu_generation(fields)}


# The ISA features that change which precision is fastest (bf16 training, VNNI/dot-product INT8): a CPU's
# model name alone ("AMD EPYC") does not tell a Zen 3 from a Zen 5.
_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "i8mm", "bf16", "sve")


def cpu_generation(fields: dict[str, str]) -> dict[str, str]:
    """{"cpu_family_model": "family 26 model 2", "cpu_features": "avx2 avx512f ..."} from /proc/cpuinfo."""
    out = {}
    if "cpu family" in fields and "model" in fields:
        out["cpu_family_model"] = f"family {fields['cpu family']} model {fields['model']}"
    flags = host_cpu_flags()
    if flags:
        out["cpu_features"] = " ".join(f for f in _FEATURES if f in flags)
    return out


@functools.lru_cache(maxsize=1)
def host_cpu_flags() -> frozenset[str]:
    """This host's CPU feature flags (/proc/cpuinfo ``flags``, or ``Features`` on Arm); empty where unreadable."""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def describe_host(host: dict) -> str:
    """One line for reports and benchmark tables: 'AMD EPYC (family 26 model 2; avx2 avx512f ...), 2 cores'."""
    detail = "; ".join(x for x in (host.get("cpu_family_model"), host.get("cpu_features")) if x)
    return f"{host.get('cpu', '?')}" + (f" ({detail})" if detail else "") + f", {host.get('cores', '?')} cores"

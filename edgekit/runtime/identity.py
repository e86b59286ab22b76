"""Who measured: the machine a number comes from, as the host's manifest and a device report it."""

from __future__ import annotations

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
    os_name = f"{platform.system()} {platform.release()}"
    release = _read("/etc/os-release") or ""
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    return {"hostname": platform.node(), "model": _read("/proc/device-tree/model") or _read(
                "/sys/devices/virtual/dmi/id/product_name") or platform.machine(),
            "machine": platform.machine(), "cpu": cpu, "cores": str(os.cpu_count()), "os": os_name,
            "python": platform.python_version(), "numpy": np.__version__,
            "jetpack_l4t": (_read("/etc/nv_tegra_release") or "").split(",")[0] or None}

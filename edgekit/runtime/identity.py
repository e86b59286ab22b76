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
    """Board model (device tree on Pi/Jetson), OS, CPU, cores, Python; ``emulated`` names the emulator
    when this Python's machine is emulated (its latency is then no device's)."""
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
    identity = {"hostname": platform.node(), "model": _read("/proc/device-tree/model") or _read(
                    "/sys/devices/virtual/dmi/id/product_name") or platform.machine(),
                "machine": platform.machine(), "cpu": cpu, "cores": str(os.cpu_count()), "os": os_name,
                "python": platform.python_version(), "numpy": np.__version__,
                "jetpack_l4t": (_read("/etc/nv_tegra_release") or "").split(",")[0] or None,
                **cpu_generation(fields)}
    emulator = emulation()
    if emulator:
        identity.update(emulated=emulator, model=f"emulated {platform.machine()} ({emulator})")
    if emulator == "qemu-user":
        # /proc/cpuinfo is the host's (or, through .ci/emulated-pi.sh's wrapper, the emulated CPU's): name the
        # CPU QEMU emulates (QEMU_CPU, which QEMU reads; "max" by default) and the host's where it shows.
        foreign = not cpuinfo_matches_machine(text)
        identity["cpu"] = f"{os.environ.get('QEMU_CPU') or 'max'} (emulated)" + (f" on {cpu}" if foreign else "")
        if foreign:
            identity.pop("cpu_features", None)
            identity.pop("cpu_family_model", None)
    return identity


_ARM = ("aarch64", "arm64", "armv7l", "armv8l", "armv6l")


def cpuinfo_matches_machine(text: str | None = None) -> bool:
    """Whether /proc/cpuinfo describes a CPU of this Python's architecture. QEMU user mode before 8.2 passes
    the host's file through, so an aarch64 Python reads an x86 CPU's (and ONNX Runtime, parsing it for ARM
    processors, crashes)."""
    text = _read("/proc/cpuinfo") if text is None else text
    if not text:
        return True   # nothing to contradict (no /proc): assume it does
    arm_file = "CPU implementer" in text
    return arm_file == (platform.machine().lower() in _ARM)


def emulation() -> str | None:
    """``"qemu-user"`` when this process is QEMU's user-mode emulator running a foreign-architecture Python,
    the value of ``EDGEKIT_EMULATED`` when set (what no process can see from inside, e.g. a full-system
    emulator), else None. Read from what QEMU does not rewrite: the kernel's name for the process
    (``qemu-aarch64-static``, when started by name), the executable files the kernel mapped (when
    ``/proc/self/map_files`` is readable: started through binfmt_misc too), or a /proc/cpuinfo of
    another architecture than the one Python runs on."""
    status = _read("/proc/self/status") or ""
    comm = next((line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("Name:")), "")
    if comm.startswith("qemu-") or not cpuinfo_matches_machine():
        return "qemu-user"
    try:
        mapped = {os.readlink(os.path.join("/proc/self/map_files", f)) for f in os.listdir("/proc/self/map_files")}
    except OSError:   # readable by privileged processes only
        mapped = set()
    if any(os.path.basename(path).startswith("qemu-") for path in mapped):
        return "qemu-user"
    return os.environ.get("EDGEKIT_EMULATED") or None


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

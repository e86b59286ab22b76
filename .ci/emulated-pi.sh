#!/usr/bin/env bash
# An emulated Raspberry Pi: Debian bookworm's arm64 Python 3.11 (the Python Raspberry Pi OS ships) with
# numpy and LiteRT's aarch64 wheels, run by QEMU in user mode. No hardware, no binfmt registration, no
# root inside the sysroot: every ARM instruction of the runner and the runtime's kernels really executes,
# so accuracy measured there is ARM-kernel accuracy (its latency is not a Pi's: edgekit labels it
# "emulated"). Prints the path of the wrapper to pass as `edgekit bench --remote-python`.
#
#   .ci/emulated-pi.sh            build once (about a minute), then reuse: prints <sysroot>/python3
#   EDGEKIT_PI_SYSROOT=DIR ...    where to build it (default ~/.cache/edgekit/emulated-pi)
#
# Needs apt-get (any Debian-based host) and pip; installs qemu-user-static (with sudo when not root). The
# arm64 packages come from Debian bookworm through a private apt configuration: the host's is not touched.
set -euo pipefail

SYSROOT="${EDGEKIT_PI_SYSROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/edgekit/emulated-pi}"
# What goes in; changing it (or this version) rebuilds the sysroot.
DEBS="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6 zlib1g
      libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libuuid1"
# ai-edge-litert 1.4.0 is the newest release with an aarch64 cp311 wheel: what `pip install` gives a Pi user;
# numpy and onnxruntime as pinned in .ci/constraints.txt.
WHEELS="numpy==2.4.6 ai-edge-litert==1.4.0 onnxruntime==1.32.0"
STAMP_TEXT="v3 $DEBS $WHEELS"
WRAPPER="$SYSROOT/python3"

log() { echo "emulated-pi: $*" >&2; }
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"   # the host's, for pip download and unzip

SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"

if ! command -v qemu-aarch64-static >/dev/null; then
  log "installing qemu-user-static"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null \
    || { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
         && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null; }
fi

if [ -x "$WRAPPER" ] && [ "$(cat "$SYSROOT/.built" 2>/dev/null)" = "$STAMP_TEXT" ]; then
  echo "$WRAPPER"
  exit 0
fi

# Built in a temporary folder next to the final one and renamed into place: an interrupted build leaves
# nothing that looks finished.
mkdir -p "$(dirname "$SYSROOT")"
BUILD="$(mktemp -d "$SYSROOT.build.XXXXXX")"
chmod 755 "$BUILD"   # apt fetches as the _apt user when root
trap 'rm -rf "$BUILD"' EXIT
mkdir -p "$BUILD/root" "$BUILD/debs" "$BUILD/wheels"

# Debian bookworm's arm64 packages through a private apt configuration (its own sources, index and cache in
# the build folder): the host's apt sources, dpkg architectures and lock are left alone, and the Python is
# bookworm's whatever the host runs.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -f "$KEYRING" ]; then
  log "installing debian-archive-keyring"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debian-archive-keyring >/dev/null
fi
APT="$BUILD/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial"
touch "$APT/status"
MIRROR="${EDGEKIT_PI_DEBIAN_MIRROR:-http://deb.debian.org}"
for suite in "debian bookworm" "debian bookworm-updates" "debian-security bookworm-security"; do
  set -- $suite
  echo "deb [arch=arm64 signed-by=$KEYRING] $MIRROR/$1 $2 main"
done > "$APT/sources.list"
apt_private() {
  apt-get -qq -o Dir::State="$APT" -o Dir::State::Lists="$APT/lists" -o Dir::State::status="$APT/status" \
    -o Dir::Cache="$APT" -o Dir::Cache::archives="$APT/archives" -o Dir::Etc::SourceList="$APT/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
    -o APT::Architecture=arm64 -o APT::Architectures=arm64 -o Debug::NoLocking=1 \
    -o APT::Sandbox::User="$(id -un)" "$@"   # as root: the _apt user could not reach a folder in ~root
}
log "downloading $(echo $DEBS | wc -w) Debian bookworm arm64 packages"
apt_private update
# shellcheck disable=SC2086
(cd "$BUILD/debs" && apt_private download $DEBS)
[ "$(ls "$BUILD"/debs/*.deb 2>/dev/null | wc -l)" -eq "$(echo $DEBS | wc -w)" ] \
  || { log "apt-get download did not fetch every package"; exit 1; }
for f in "$BUILD"/debs/*.deb; do dpkg -x "$f" "$BUILD/root"; done

log "downloading aarch64 wheels: $WHEELS"
# shellcheck disable=SC2086
"$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
  --python-version 3.11 --implementation cp --abi cp311 -d "$BUILD/wheels" $WHEELS
SITE="$BUILD/root/usr/lib/python3/dist-packages"
mkdir -p "$SITE"
for w in "$BUILD"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$w" "$SITE"; done

# ONNX Runtime (pytorch/cpuinfo) parses /proc/cpuinfo to pick its kernels and crashes on import when it
# finds no ARM processor there - and QEMU user mode before 8.2 passes the host's x86 file through. The
# wrapper gives the emulated Python, in a private mount namespace, a /proc/cpuinfo that describes the
# emulated CPU: its features as QEMU reports them to the guest (AT_HWCAP/AT_HWCAP2 in /proc/self/auxv,
# decoded here once per CPU model), one entry per host CPU. Where no mount namespace can be made, the
# host's file stays and edgekit's runner skips ONNX Runtime files with that reason.
mkdir -p "$BUILD/root/cpu"
for model in cortex-a72 cortex-a76 max; do
  QEMU_CPU=$model qemu-aarch64-static -L "$BUILD/root" "$BUILD/root/usr/bin/python3.11" -c '
import struct
HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
         "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
          "i8mm bf16 dgh rng bti mte").split()
with open("/proc/self/auxv", "rb") as f:
    aux = dict(struct.iter_unpack("<QQ", f.read()))
print(" ".join([n for i, n in enumerate(HWCAP) if aux.get(16, 0) >> i & 1]
               + [n for i, n in enumerate(HWCAP2) if aux.get(26, 0) >> i & 1]))
' > "$BUILD/root/cpu/$model"
done
case_parts='cortex-a72) part=0xd08;; cortex-a76) part=0xd0b;; *) part=0x000;;'

cat > "$BUILD/root/with-arm-cpuinfo" <<WRAP
#!/bin/sh
# Inside a private mount namespace: bind a /proc/cpuinfo describing the emulated CPU (\$1), then exec the rest.
features=\$(cat "$SYSROOT/cpu/\$1") && shift
case "\$QEMU_CPU" in $case_parts esac
file=\$(mktemp) && i=0
while [ \$i -lt \$(nproc) ]; do
  printf 'processor\\t: %d\\nFeatures\\t: %s\\nCPU implementer\\t: 0x41\\nCPU architecture: 8\\nCPU variant\\t: 0x0\\nCPU part\\t: %s\\nCPU revision\\t: 0\\n\\n' \$i "\$features" \$part
  i=\$((i + 1))
done > "\$file"
mount --bind "\$file" /proc/cpuinfo 2>/dev/null
rm -f "\$file"
exec "\$@"
WRAP

cat > "$BUILD/root/python3" <<WRAP
#!/bin/sh
# Debian bookworm's arm64 Python 3.11 under QEMU user mode (built by edgekit's .ci/emulated-pi.sh).
# QEMU_CPU picks the emulated core: cortex-a72 (a Pi 4) unless set; cortex-a76 is a Pi 5's.
export QEMU_CPU="\${QEMU_CPU:-cortex-a72}"
set -- qemu-aarch64-static -L "$SYSROOT" "$SYSROOT/usr/bin/python3.11" "\$@"
if [ -f "$SYSROOT/cpu/\$QEMU_CPU" ] && ! grep -q '^CPU implementer' /proc/cpuinfo 2>/dev/null; then
  for ns in "-m" "-r -m"; do   # as root, else in a user namespace
    if unshare \$ns true 2>/dev/null; then exec unshare \$ns "$SYSROOT/with-arm-cpuinfo" "\$QEMU_CPU" "\$@"; fi
  done
fi
exec "\$@"
WRAP
chmod 755 "$BUILD/root/python3" "$BUILD/root/with-arm-cpuinfo"
echo "$STAMP_TEXT" > "$BUILD/root/.built"

rm -rf "$SYSROOT.old"
[ -e "$SYSROOT" ] && mv "$SYSROOT" "$SYSROOT.old"
mv "$BUILD/root" "$SYSROOT"
rm -rf "$SYSROOT.old"

"$WRAPPER" -c "import numpy, ai_edge_litert.interpreter, onnxruntime" \
  || { log "the emulated Python cannot import numpy, LiteRT and ONNX Runtime"; exit 1; }
log "built $SYSROOT"
echo "$WRAPPER"

#!/usr/bin/env bash
# Install what cri-py needs on a Debian machine (as root), idempotently: host packages, then the venv.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

packages=(
    runc crun runsc conmon containernetworking-plugins catatonit busybox-static
    docker-registry iproute2 iptables kmod util-linux procps
    skopeo containerd openssl
    python3 python3-venv python3-dev gcc libc6-dev
)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing Debian packages (${missing[*]}); run as root" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # no service starts inside containers or CI machines without an init system
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# overlayfs for container root filesystems (built in on most kernels; a module on some)
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true

python=${PYTHON:-python3}
venv="$here/.venv"
stamp="$venv/.installed-from"
want=$(sha256sum "$here/pyproject.toml" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "install-deps: preparing the virtual environment in $venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -e "$here[dev,play]"
    echo "$want" > "$stamp"
fi

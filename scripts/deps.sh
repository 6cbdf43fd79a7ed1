#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need, when any is missing.
set -euo pipefail
packages=(libpq-dev libhiredis-dev libsystemd-dev libssl-dev pkg-config postgresql redis-server redis-tools "$@")
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged servers; the project only uses its own throwaway ones (InfluxDB too).
for service in postgresql redis-server influxdb; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
        systemctl stop "$service" || true
    fi
done

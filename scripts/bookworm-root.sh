#!/usr/bin/env bash
# Prints the path of a Debian 12 root filesystem that boots under systemd-nspawn, for the
# container test (scripts/container-test.sh): debootstrap's minbase plus systemd, dbus and the
# package's dependencies. It is cached in $OUTBOX_RELAY_ROOT_CACHE (default
# /var/cache/outbox-relay) and rebuilt when missing or when this script (its recipe) changes.
# The mirror is the one apt already uses here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${OUTBOX_RELAY_ROOT_CACHE:-/var/cache/outbox-relay}
root="$cache/bookworm-root"
packages=systemd,systemd-sysv,dbus,init-system-helpers,libpq5,libhiredis0.14,libsystemd0,libssl3,ca-certificates
recipe=$(sha256sum "$here/bookworm-root.sh" | cut -d' ' -f1)
mkdir -p "$cache"
# One build at a time; a second caller waits and then finds the root ready.
exec 9>"$cache/.lock"
flock 9

if [ -f "$root/.recipe" ] && [ "$(cat "$root/.recipe")" = "$recipe" ]; then
    echo "$root"
    exit 0
fi

mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\(http[^[:space:]]*\/debian\)\/\?[[:space:]]*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$uri" ] || uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^[:space:]]*\/debian\)\/\?[[:space:]]\+bookworm[[:space:]].*/\2/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)
    [ -n "$uri" ] || { echo "no Debian mirror in apt's sources" >&2; exit 1; }
    echo "$uri"
}

building="$cache/bookworm-root.building"
rm -rf "$building"
trap 'rm -rf "$building"' EXIT
echo "building the Debian 12 root in $root (once per machine)" >&2
debootstrap --variant=minbase --include="$packages" bookworm "$building" "$(mirror)" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
# Boot to a prompt-less multi-user system: no getty on the console, the host's name resolution.
chroot "$building" systemctl mask console-getty.service getty@tty1.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
rm -f "$building/etc/machine-id" && touch "$building/etc/machine-id"
echo "$recipe" >"$building/.recipe"
rm -rf "$root"
mv "$building" "$root"
trap - EXIT
echo "$root"

#!/usr/bin/env bash
# Builds build/deb/outbox-relay_<version>_<arch>.deb from `make install` into a staging folder.
set -euo pipefail
version=$1
out=$2
arch=$(dpkg --print-architecture)
root="$out/root"
rm -rf "$root"
mkdir -p "$root/DEBIAN"
make --no-print-directory install DESTDIR="$root" PREFIX=/usr >/dev/null
cat >"$root/DEBIAN/control" <<CONTROL
Package: outbox-relay
Version: $version
Architecture: $arch
Maintainer: outbox-relay maintainers <maintainers@outbox-relay.invalid>
Depends: libc6, libgcc-s1, libstdc++6, libpq5, libhiredis0.14, libsystemd0, libssl3
Section: database
Priority: optional
Description: relay from a PostgreSQL outbox table to Sidekiq's Redis queues
 A drop-in replacement for res_outbox (ruby_event_store-outbox) that leases split keys with
 PostgreSQL advisory locks, pushes each row to Redis exactly once, and runs as a systemd
 template unit: outbox-relay@<instance>.service reads /etc/outbox-relay/<instance>.env.
CONTROL
for script in postinst postrm; do
    cat >"$root/DEBIAN/$script" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SCRIPT
    chmod 755 "$root/DEBIAN/$script"
done
dpkg-deb --root-owner-group --build "$root" "$out/outbox-relay_${version}_${arch}.deb" >/dev/null
echo "$out/outbox-relay_${version}_${arch}.deb"

#!/usr/bin/env bash
# Builds OUT/outbox-relay_<version>_<arch>.deb from `make install` into a staging folder, with
# the maintainer scripts, copyright and changelog of deploy/debian/.
#   scripts/deb.sh VERSION OUT      VERSION is the Debian version, such as 0.1.0-1
set -euo pipefail
version=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
debian="$here/../deploy/debian"
arch=$(dpkg --print-architecture)
root="$out/root"

changelog_version=$(sed -n '1s/^outbox-relay (\([^)]*\)).*/\1/p' "$debian/changelog")
if [ "$changelog_version" != "$version" ]; then
    echo "deploy/debian/changelog's newest entry is $changelog_version, not $version: add an entry" >&2
    exit 1
fi

rm -rf "$root"
mkdir -p "$root/DEBIAN"
make --no-print-directory -C "$here/.." install DESTDIR="$(cd "$out" && pwd)/root" PREFIX=/usr >/dev/null
doc="$root/usr/share/doc/outbox-relay"
install -m 644 "$debian/copyright" "$doc/copyright"
gzip -9n <"$debian/changelog" >"$doc/changelog.Debian.gz"
chmod 644 "$doc/changelog.Debian.gz"
install -D -m 644 "$debian/lintian-overrides" "$root/usr/share/lintian/overrides/outbox-relay"
for script in postinst prerm postrm; do
    install -m 755 "$debian/$script" "$root/DEBIAN/$script"
done
installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: outbox-relay
Version: $version
Architecture: $arch
Maintainer: outbox-relay maintainers <maintainers@outbox-relay.invalid>
Installed-Size: $installed_size
Depends: libc6, libgcc-s1, libstdc++6, libpq5, libhiredis0.14, libsystemd0, libssl3
Section: database
Priority: optional
Description: relay from a PostgreSQL outbox table to Sidekiq's Redis queues
 A drop-in replacement for res_outbox (ruby_event_store-outbox) that leases
 split keys with PostgreSQL advisory locks, pushes each row to Redis exactly
 once, and runs as a systemd template unit: outbox-relay@<instance>.service
 reads /etc/outbox-relay/<instance>.env.
CONTROL
(cd "$root" && find usr -type f -exec md5sum {} + | sort -k2) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
deb="$out/outbox-relay_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$root"
echo "$deb"

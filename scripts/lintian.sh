#!/usr/bin/env bash
# Debian's lintian on the package: fails on any error, prints warnings for the record.
set -euo pipefail
deb=$1
report=$(lintian --tag-display-limit 0 "$deb" 2>&1) || true
[ -n "$report" ] && echo "$report"
if echo "$report" | grep -q '^E: '; then
    echo "lintian: errors in $deb" >&2
    exit 1
fi
echo "lintian: no errors in $(basename "$deb")"

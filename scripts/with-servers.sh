#!/usr/bin/env bash
# Runs a command with throwaway PostgreSQL and Redis servers, and stops them afterwards, whether
# the command passed, failed or was interrupted. The command sees OUTBOX_TEST_* (scripts/servers.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/outbox-relay-servers.XXXXXX)
trap '"$here/servers.sh" stop "$dir"' EXIT
trap 'exit 130' INT TERM
"$here/servers.sh" start "$dir"
# shellcheck disable=SC1091
. "$dir/env"
"$@"

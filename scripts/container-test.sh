#!/usr/bin/env bash
# The .deb under real systemd, as an operator meets it: boots a Debian 12 container
# (scripts/bookworm-root.sh, systemd-nspawn -b, sharing the host's network) and checks, with the
# unit's hardening exactly as shipped:
#   - dpkg -i; /etc/outbox-relay/default.env written as the README says; `systemctl enable --now`
#     with the database down returns at once and the unit is active with STATUS=waiting (READY=1
#     at start), then relays the host's rows once PostgreSQL is up; no restart for 20 s;
#   - restart after kill -9, restart by the watchdog after SIGSTOP (WatchdogSec=10 in a drop-in);
#   - `outbox-relay status` from an admin's shell, as the README shows it;
#   - a misspelled OUTBOX_RELAY_* refused without restarts; OUTBOX_RELAY_SPLIT_KEYS= serves every key;
#   - an upgrade to a newer .deb while rows flow: the instance restarts on the new binary, no row lost;
#   - a clean systemctl stop, and dpkg --purge with an instance running: nothing of ours left;
#   - no password in the journal or in any output; systemd-analyze security "OK" or better.
# Run by `make container-test` (part of `make test`) inside scripts/with-servers.sh:
#   scripts/container-test.sh build/deb/outbox-relay_<version>_<arch>.deb
set -euo pipefail
export LC_ALL=C.UTF-8
here=$(cd "$(dirname "$0")" && pwd)
deb=$(realpath "$1")
: "${OUTBOX_TEST_DATABASE_URL:?run inside scripts/with-servers.sh}"
started=$(date +%s)
passed=0
exec 3>&1
unit=outbox-relay@default.service
db_secret="db-secret-$RANDOM$RANDOM"
redis_secret="redis-secret-$RANDOM$RANDOM"

root=$("$here/bookworm-root.sh") || { echo "container: 0 passed, 1 failed: no Debian 12 root" >&2; exit 1; }
work=$(mktemp -d /tmp/outbox-relay-container.XXXXXX)
mkdir -p "$work/share"
nspawn_pid=""
leader=""
producer_pid=""

# --- helpers -------------------------------------------------------------------------------------

inside() {
    nsenter -t "$leader" -m -u -i -p -C -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
        SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

diagnose() {
    [ -n "$leader" ] || return 0
    echo "--- systemctl status 'outbox-relay@*'" >&2
    inside systemctl status --no-pager --full 'outbox-relay@*' 2>&1 | tail -n 30 | scrub >&2 || true
    echo "--- journal" >&2
    inside journalctl --no-pager -n 60 -o short-precise 2>&1 | scrub >&2 || true
}

# Never print a password, not even while failing.
scrub() { sed -e "s/$db_secret/***/g" -e "s/$redis_secret/***/g"; }

fail() {
    echo "not ok - $*" | scrub >&2
    diagnose
    echo "container: $passed passed, 1 failed" >&3
    exit 1
}

ok() {
    passed=$((passed + 1))
    echo "ok - $* [$(($(date +%s) - started)) s]" >&3
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds, or fails the test.
wait_for() {
    local seconds=$1 description=$2
    shift 2
    local deadline=$(($(date +%s%N) + seconds * 1000000000))
    until "$@" >/dev/null; do
        [ "$(date +%s%N)" -lt "$deadline" ] || fail "$description (not within ${seconds} s)"
        sleep 0.2
    done
    ok "$description"
}

show() { inside systemctl show -p "$2" --value "$1"; }

unit_is() { # unit_is UNIT ACTIVE SUB
    [ "$(show "$1" ActiveState)" = "$2" ] && [ "$(show "$1" SubState)" = "$3" ]
}

# grep reads everything (no -q), so that pipefail never sees the writer's SIGPIPE.
journal_has() { inside journalctl --no-pager -o cat -u "$1" | grep -F -- "$2" >/dev/null; }

sql() { psql "$db_url" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

redis() { redis-cli -p "$OUTBOX_TEST_REDIS_PORT" -a "$redis_secret" --no-auth-warning "$@"; }

pending() { sql "SELECT count(*) FROM event_store_outbox WHERE enqueued_at IS NULL AND split_key = ANY('{$1}')"; }

queued() { # jobs in Redis on the given queues
    local total=0 queue
    for queue in "$@"; do total=$((total + $(redis llen "queue:$queue"))); done
    echo "$total"
}

relayed_all() { [ "$(pending "$1")" = 0 ] && [ "$(queued "${@:2}")" = "$expected" ]; }

insert() { # insert KEY COUNT: COUNT jobs on queue KEY with split key KEY, numbered on from $next
    sql "INSERT INTO event_store_outbox (split_key, format, payload, created_at)
         SELECT '$1', 'sidekiq5', convert_to('{\"class\":\"J\",\"queue\":\"$1\",\"args\":[' || g || ']}', 'UTF8'), now() AT TIME ZONE 'utc'
         FROM generate_series($next, $next + $2 - 1) g"
    next=$((next + $2))
}

# The HTTP status of GET PATH on the relay's metrics server, from the host (shared network).
http_status() {
    local line
    { exec 5<>"/dev/tcp/127.0.0.1/$metrics_port"; } 2>/dev/null || return 1
    printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&5
    IFS= read -r line <&5 || true
    exec 5<&- 5>&-
    line=${line#HTTP/1.? }
    echo "${line%% *}"
}

readyz_is() { [ "$(http_status /readyz)" = "$1" ]; }

pg_ctl_as_postgres() { runuser -u postgres -- "$OUTBOX_TEST_PGBIN/pg_ctl" -D "$OUTBOX_TEST_DIR/pg/data" "$@"; }

start_postgres() {
    pg_ctl_as_postgres -l "$OUTBOX_TEST_DIR/pg/server.log" -w -t 60 \
        -o "-p $OUTBOX_TEST_PG_PORT -k $OUTBOX_TEST_DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
}

# Processes of the container running the relay's binary, seen from the host.
relay_processes() {
    local pidns process
    pidns=$(readlink "/proc/$leader/ns/pid")
    for process in /proc/[0-9]*; do
        [ "$(readlink "$process/ns/pid" 2>/dev/null)" = "$pidns" ] || continue
        case "$(readlink "$process/exe" 2>/dev/null)" in *outbox-relay*) echo "${process#/proc/}" ;; esac
    done
}

cleanup() {
    local status=$?
    [ -n "$producer_pid" ] && kill "$producer_pid" 2>/dev/null
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # Power the machine off; systemd-nspawn exits when its init has.
        if [ -n "$leader" ]; then inside systemctl poweroff --no-block >/dev/null 2>&1 || kill -TERM "$nspawn_pid" 2>/dev/null; fi
        for _ in $(seq 1 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$nspawn_pid" 2>/dev/null && kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    echo "container test: $(($(date +%s) - started)) s" >&3
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'fail "line $LINENO: $BASH_COMMAND failed"' ERR

# --- the packages: this build, and a newer version of it for the upgrade -------------------------

version=$(dpkg-deb -f "$deb" Version)
arch=$(dpkg-deb -f "$deb" Architecture)
newer="$version+upgrade1"
cp "$deb" "$work/share/old.deb"
dpkg-deb -R "$deb" "$work/newer"
sed -i "s/^Version: .*/Version: $newer/" "$work/newer/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip -z1 -b "$work/newer" "$work/share/new.deb" >/dev/null
rm -rf "$work/newer"
ok "Debian 12 root at $root; $version and $newer packages ready"

# --- the servers: a database role and a Redis password, so that secrets can be looked for -------

db_url="postgresql://relay:$db_secret@127.0.0.1:$OUTBOX_TEST_PG_PORT/postgres"
psql "$OUTBOX_TEST_DATABASE_URL" -XAtq -c "CREATE ROLE relay LOGIN SUPERUSER PASSWORD '$db_secret'"
redis-cli -p "$OUTBOX_TEST_REDIS_PORT" CONFIG SET requirepass "$redis_secret" >/dev/null
redis_url="redis://:$redis_secret@127.0.0.1:$OUTBOX_TEST_REDIS_PORT/0"

# --- boot ----------------------------------------------------------------------------------------

# The container's init: the child of systemd-nspawn that is PID 1 in its own namespace. A plain
# "first child" can be nspawn's short-lived outer child, which exits once init has been cloned.
container_init() {
    local child
    for child in $(pgrep -P "$nspawn_pid"); do
        case "$(sed -n 's/^NSpid:[[:space:]]*//p' "/proc/$child/status" 2>/dev/null)" in
            *[[:space:]]1) echo "$child"; return 0 ;;
        esac
    done
    return 1
}
booted() { case "$(inside systemctl is-system-running 2>/dev/null)" in running | degraded) return 0 ;; *) return 1 ;; esac; }
# boot ATTEMPT: starts the container and waits up to 60 s for systemd to run. Returns 1, with the
# console's last lines on stderr, when systemd-nspawn or its init exits first: that is the host
# refusing a container (seen once on a CI machine), which a second attempt is allowed to get past.
boot() {
    leader=""
    systemd-nspawn -b -D "$root" --register=no --keep-unit --volatile=overlay -M "outbox-relay-test-$$-$1" \
        --bind-ro="$work/share:/srv/test" --console=pipe </dev/null >"$work/console.log" 2>&1 &
    nspawn_pid=$!
    local deadline=$(($(date +%s) + 60))
    until [ -n "$leader" ] && booted; do
        if ! kill -0 "$nspawn_pid" 2>/dev/null || { [ -n "$leader" ] && ! kill -0 "$leader" 2>/dev/null; }; then
            wait "$nspawn_pid" 2>/dev/null && status=0 || status=$?
            echo "--- attempt $1: systemd-nspawn exited ($status) before systemd ran; its console:" >&2
            tail -n 40 "$work/console.log" | scrub >&2
            nspawn_pid="" leader=""
            return 1
        fi
        [ "$(date +%s)" -lt "$deadline" ] || {
            echo "--- systemd-nspawn's console:" >&2
            tail -n 40 "$work/console.log" | scrub >&2
            fail "the container booted systemd (not within 60 s)"
        }
        [ -n "$leader" ] || leader=$(container_init || true)
        sleep 0.2
    done
}
boot 1 || boot 2 || fail "the container booted systemd (systemd-nspawn exited twice)"
ok "the container booted systemd"

# --- install -------------------------------------------------------------------------------------

inside dpkg -i /srv/test/old.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
ok "dpkg -i installs $version"
for file in /usr/bin/outbox-relay /lib/systemd/system/outbox-relay@.service /usr/share/doc/outbox-relay/copyright \
    /usr/share/doc/outbox-relay/changelog.Debian.gz /usr/share/doc/outbox-relay/README.md \
    /usr/share/doc/outbox-relay/examples/default.env; do
    inside test -e "$file" || inside test -e "/usr$file" || fail "$file is installed"
done
[ "$(inside dpkg-query -W -f='${Installed-Size}' outbox-relay)" -gt 0 ] || fail "Installed-Size is set"
ok "binary, unit, copyright, changelog.Debian.gz, README and examples installed; Installed-Size set"

exposure=$(inside systemd-analyze security "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p')
case "$exposure" in *" SAFE" | *" OK") ok "systemd-analyze security: $exposure" ;; *) fail "systemd-analyze security is OK or better, got '$exposure'" ;; esac

inside outbox-relay migrate --database-url "$db_url" >/dev/null || fail "outbox-relay migrate"

# As the README says: copy the example, edit it. The test's only drop-in shortens the watchdog.
inside install -m 600 /usr/share/doc/outbox-relay/examples/default.env /etc/outbox-relay/default.env
inside sed -i -e "s|^DATABASE_URL=.*|DATABASE_URL=$db_url|" -e "s|^REDIS_URL=.*|REDIS_URL=$redis_url|" /etc/outbox-relay/default.env
# The metrics server too, so /readyz and its socket are checked under the unit's sandbox.
metrics_port=$((20000 + RANDOM % 12000))
while (exec 3<>"/dev/tcp/127.0.0.1/$metrics_port") 2>/dev/null; do metrics_port=$((20000 + RANDOM % 12000)); done
inside sh -c "echo OUTBOX_RELAY_METRICS_LISTEN=127.0.0.1:$metrics_port >>/etc/outbox-relay/default.env"
inside mkdir -p "/etc/systemd/system/$unit.d"
inside sh -c "printf '[Service]\nWatchdogSec=10\n' >/etc/systemd/system/$unit.d/watchdog.conf"

# --- start while the database is down ------------------------------------------------------------

pg_ctl_as_postgres -m fast -w stop >/dev/null
before=$(date +%s%N)
timeout 30 nsenter -t "$leader" -m -u -i -p -C -- systemctl enable --now "$unit" >"$work/enable.log" 2>&1 \
    || { cat "$work/enable.log" >&2; fail "systemctl enable --now $unit with the database down"; }
took=$((($(date +%s%N) - before) / 1000000))
[ "$took" -lt 10000 ] || fail "systemctl enable --now returns at once with the database down (took $took ms)"
ok "systemctl enable --now returned in $took ms with the database down"
waiting() { unit_is "$unit" active running && [[ "$(show "$unit" StatusText)" == "waiting: "* ]]; }
wait_for 10 "active (running), READY=1 seen, STATUS=waiting: … while the database is down" waiting
first_pid=$(show "$unit" MainPID)
since=$(date +%s)
wait_for 10 "the journal names the unreachable database" journal_has "$unit" "cannot connect to PostgreSQL"
wait_for 10 "/readyz answers 503 while the database is down" readyz_is 503
still_waiting() {
    waiting && [ "$(show "$unit" NRestarts)" = 0 ] && [ "$(show "$unit" MainPID)" = "$first_pid" ] \
        || fail "still active (running) and waiting, not restarted, while the database is down"
    [ $(($(date +%s) - since)) -ge 10 ]
}
wait_for 20 "active (running), STATUS=waiting: …, no restart, with the database down for 10 s" still_waiting

start_postgres
next=1
insert default 150
insert mailers 50
insert other 20
expected=200
wait_for 30 "the rows of default and mailers relayed once PostgreSQL is up" relayed_all default,mailers default mailers
relaying() { [[ "$(show "$unit" StatusText)" == "relaying: "* ]]; }
wait_for 10 "STATUS=relaying: …" relaying
wait_for 10 "/readyz answers 200 once both servers answer" readyz_is 200
inside systemctl status --no-pager "$unit" >"$work/status.txt" 2>&1 || true
grep -q 'Status: "relaying: ' "$work/status.txt" || fail "systemctl status shows the STATUS= line"
grep -q 'Active: active (running)' "$work/status.txt" || fail "systemctl status shows active (running)"
ok "systemctl status: active (running) with the STATUS= line"
journal_has "$unit" '"message":"ready"' || fail "the journal has the relay's ready line"
journal_has "$unit" "Started $unit" || fail "systemd logged Started (READY=1)"
ok "journal: the relay's ready line and systemd's Started"
[ "$(pending other)" = 20 ] || fail "the rows of a key the instance does not serve stay pending"
ok "rows of other split keys stay pending (OUTBOX_RELAY_SPLIT_KEYS=default,mailers)"

# The README's status example, from an admin's shell.
inside sh -c 'set -a; . /etc/outbox-relay/default.env; exec outbox-relay status --database-url "$DATABASE_URL" --max-age PT5M' \
    >"$work/admin-status.txt" 2>&1 || fail "outbox-relay status from an admin's shell: $(scrub <"$work/admin-status.txt")"
grep -q other "$work/admin-status.txt" || fail "status lists the pending key: $(scrub <"$work/admin-status.txt")"
ok "outbox-relay status --database-url \"\$DATABASE_URL\" works from an admin's shell"

stable() {
    [ "$(show "$unit" NRestarts)" = 0 ] && [ "$(show "$unit" MainPID)" = "$first_pid" ] || fail "no restart (NRestarts $(show "$unit" NRestarts))"
    [ $(($(date +%s) - since)) -ge 20 ]
}
wait_for 40 "active (running) for 20 s with NRestarts=0 and the same process" stable

# --- kill -9 and the watchdog --------------------------------------------------------------------

inside sh -c "kill -KILL $first_pid"
killed_restart() { [ "$(show "$unit" NRestarts)" = 1 ] && unit_is "$unit" active running && [ "$(show "$unit" MainPID)" != "$first_pid" ]; }
wait_for 20 "restarted after kill -9 (NRestarts=1)" killed_restart
journal_has "$unit" "Main process exited, code=killed, status=9/KILL" || fail "the journal has the kill"
insert default 30
expected=230
wait_for 30 "rows relayed after the restart" relayed_all default,mailers default mailers

second_pid=$(show "$unit" MainPID)
inside sh -c "kill -STOP $second_pid"
watchdog_restart() { [ "$(show "$unit" NRestarts)" = 2 ] && unit_is "$unit" active running && [ "$(show "$unit" MainPID)" != "$second_pid" ]; }
wait_for 40 "restarted by the watchdog after SIGSTOP (NRestarts=2)" watchdog_restart
journal_has "$unit" "Watchdog timeout" || fail "the journal has the watchdog timeout"
ok "journal: Watchdog timeout"
! journal_has "$unit" "status=31/SYS" || fail "no SIGSYS: the system call filter lets the relay run"
ok "no SIGSYS under the shipped SystemCallFilter="

# --- upgrade while rows flow ---------------------------------------------------------------------

old_pid=$(show "$unit" MainPID)
upgrade_rows=500
psql "$db_url" -XAtq -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN FOR i IN $next..$((next + upgrade_rows - 1)) LOOP
    INSERT INTO event_store_outbox (split_key, format, payload, created_at)
    VALUES ('mailers', 'sidekiq5', convert_to('{\"class\":\"J\",\"queue\":\"mailers\",\"args\":[' || i || ']}', 'UTF8'), now() AT TIME ZONE 'utc');
    COMMIT; PERFORM pg_sleep(0.01); END LOOP; END \$\$" >"$work/producer.log" 2>&1 &
producer_pid=$!
next=$((next + upgrade_rows))
flowing() { [ "$(queued default mailers)" -gt $((expected + 20)) ]; }
wait_for 20 "rows flowing before the upgrade" flowing
kill -0 "$producer_pid" 2>/dev/null || fail "the producer still inserts during the upgrade"
inside dpkg -i /srv/test/new.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i of $newer"; }
kill -0 "$producer_pid" 2>/dev/null || fail "rows were still being inserted when the upgrade finished"
ok "upgraded to $newer while rows were being committed"
wait "$producer_pid" || fail "the producer: $(cat "$work/producer.log")"
producer_pid=""
expected=$((expected + upgrade_rows))
[ "$(inside dpkg-query -W -f='${Version}' outbox-relay)" = "$newer" ] || fail "dpkg shows $newer"
new_pid=$(show "$unit" MainPID)
[ "$new_pid" != "$old_pid" ] && unit_is "$unit" active running || fail "the running instance was restarted by the upgrade"
exe=$(inside readlink "/proc/$new_pid/exe")
[ "$exe" = /usr/bin/outbox-relay ] || fail "the instance runs the new binary, not '$exe'"
ok "the instance restarted on the new binary ($exe)"
wait_for 30 "every row committed during the upgrade relayed" relayed_all default,mailers default mailers
unique=$( (redis lrange queue:default 0 -1; redis lrange queue:mailers 0 -1) | grep -o '"args":\[[0-9]*\]' | sort -u | wc -l)
[ "$unique" = "$expected" ] || fail "each row in Redis exactly once: $unique distinct of $expected"
ok "no row lost or doubled: $expected rows, $expected distinct jobs in Redis"

# --- configuration mistakes ----------------------------------------------------------------------

inside sh -c "printf 'DATABASE_URL=%s\nREDIS_URL=%s\nOUTBOX_RELAY_BATCH_SZIE=500\n' '$db_url' '$redis_url' >/etc/outbox-relay/typo.env; chmod 600 /etc/outbox-relay/typo.env"
! inside systemctl start outbox-relay@typo.service 2>/dev/null || fail "a misspelled OUTBOX_RELAY_BATCH_SZIE fails the start"
[ "$(show outbox-relay@typo.service ActiveState)" = failed ] && [ "$(show outbox-relay@typo.service NRestarts)" = 0 ] \
    && [ "$(show outbox-relay@typo.service ExecMainStatus)" = 64 ] || fail "exit 64, failed, no restart"
journal_has outbox-relay@typo.service "OUTBOX_RELAY_BATCH_SZIE names no flag; did you mean OUTBOX_RELAY_BATCH_SIZE (--batch-size)?" \
    || fail "the journal names the closest flag"
ok "OUTBOX_RELAY_BATCH_SZIE refused with exit 64, naming OUTBOX_RELAY_BATCH_SIZE; failed without restarts"

inside sh -c "printf 'DATABASE_URL=%s\nREDIS_URL=%s\nOUTBOX_RELAY_SPLIT_KEYS=\n' '$db_url' '$redis_url' >/etc/outbox-relay/all.env; chmod 600 /etc/outbox-relay/all.env"
inside systemctl start outbox-relay@all.service || fail "outbox-relay@all starts"
expected=$((expected + 20))
wait_for 30 "OUTBOX_RELAY_SPLIT_KEYS= (empty) serves every key" relayed_all default,mailers,other default mailers other
inside systemctl stop outbox-relay@all.service

# --- stop, purge ---------------------------------------------------------------------------------

inside systemctl stop "$unit" || fail "systemctl stop"
[ "$(show "$unit" ActiveState)" = inactive ] && [ "$(show "$unit" Result)" = success ] && [ "$(show "$unit" ExecMainStatus)" = 0 ] \
    || fail "a clean stop: inactive, Result=success, exit 0 (got $(show "$unit" Result), $(show "$unit" ExecMainStatus))"
journal_has "$unit" '"message":"stopped"' || fail "the journal has the relay's stopped line"
ok "systemctl stop: inactive, Result=success, exit status 0, the relay logged stopped"

inside systemctl start "$unit"
wait_for 10 "started again before the purge" unit_is "$unit" active running
inside dpkg --purge outbox-relay >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge"; }
[ -z "$(relay_processes)" ] || fail "no relay process left after the purge: $(relay_processes)"
[ "$(show "$unit" LoadState)" = not-found ] && [ "$(show "$unit" ActiveState)" = inactive ] || fail "the unit is gone and inactive"
for path in /etc/outbox-relay /etc/systemd/system/multi-user.target.wants/outbox-relay@default.service \
    "/etc/systemd/system/$unit.d" /usr/bin/outbox-relay /lib/systemd/system/outbox-relay@.service /usr/share/doc/outbox-relay; do
    ! inside test -e "$path" && ! inside test -L "$path" || fail "$path is gone after the purge"
done
[ -z "$(inside find /etc/systemd/system -xtype l)" ] || fail "no dangling symlinks: $(inside find /etc/systemd/system -xtype l)"
case "$(inside dpkg-query -W -f='${Status}' outbox-relay 2>/dev/null || true)" in
"" | *not-installed) ;;
*) fail "dpkg knows the package as not installed" ;;
esac
ok "dpkg --purge with an instance running: process stopped, /etc/outbox-relay, enable symlink, drop-ins and files gone"

# --- secrets -------------------------------------------------------------------------------------

inside journalctl --no-pager -o cat >"$work/journal.txt" 2>&1
for file in "$work"/*.txt "$work"/*.log; do
    if grep -qF -e "$db_secret" -e "$redis_secret" "$file"; then fail "a password appears in $(basename "$file")"; fi
done
ok "no password in the journal, systemctl status, status output or dpkg's output"

echo "container: $passed passed, 0 failed"

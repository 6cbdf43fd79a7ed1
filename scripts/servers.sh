#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers for tests, the demo and the benchmark.
#   scripts/servers.sh start DIR   start both on free loopback ports under DIR; writes DIR/env
#   scripts/servers.sh stop DIR    stop both and remove DIR
# DIR/env exports OUTBOX_TEST_DATABASE_URL, OUTBOX_TEST_REDIS_URL, OUTBOX_TEST_REDIS_PORT,
# OUTBOX_TEST_PG_PORT, OUTBOX_TEST_DIR and OUTBOX_TEST_PGBIN.
set -euo pipefail

# A port below the kernel's ephemeral range, so no outgoing connection can hold it meanwhile.
free_port() {
    local port low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    for _ in $(seq 1 200); do
        port=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found: run 'make deps'" >&2; exit 1; }
    echo "$bin"
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local dir=$1 bin pg_port redis_port
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    bin=$(pg_bin)
    pg_port=$(free_port)
    redis_port=$(free_port)
    while [ "$redis_port" = "$pg_port" ]; do redis_port=$(free_port); done
    mkdir -p "$dir/pg" "$dir/redis"
    [ "$(id -u)" = 0 ] && chown postgres "$dir" "$dir/pg"
    as_postgres "$bin/initdb" -D "$dir/pg/data" -U postgres -A trust --no-sync >"$dir/pg/initdb.log" 2>&1 \
        || { cat "$dir/pg/initdb.log" >&2; exit 1; }
    # Another process may take the port between the check and the start: try a few ports.
    for attempt in 1 2 3; do
        as_postgres "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 \
            -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
            && break
        [ "$attempt" = 3 ] && { cat "$dir/pg/server.log" >&2; exit 1; }
        pg_port=$(free_port)
        while [ "$redis_port" = "$pg_port" ]; do pg_port=$(free_port); done
    done
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes \
        --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" --save "" --appendonly no \
        --databases 256 >/dev/null
    for _ in $(seq 1 100); do
        redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$redis_port" ping >/dev/null || { cat "$dir/redis/redis.log" >&2; exit 1; }
    cat >"$dir/env" <<ENV
export OUTBOX_TEST_DIR=$dir
export OUTBOX_TEST_PGBIN=$bin
export OUTBOX_TEST_PG_PORT=$pg_port
export OUTBOX_TEST_REDIS_PORT=$redis_port
export OUTBOX_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:$pg_port/postgres
export OUTBOX_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0
ENV
}

stop() {
    local dir=$1
    [ -d "$dir" ] || return 0
    if [ -f "$dir/redis/redis.pid" ]; then
        kill "$(cat "$dir/redis/redis.pid")" 2>/dev/null || true
    fi
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        as_postgres "$(pg_bin)/pg_ctl" -D "$dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    for _ in $(seq 1 50); do
        [ -f "$dir/redis/redis.pid" ] && kill -0 "$(cat "$dir/redis/redis.pid")" 2>/dev/null || break
        sleep 0.1
    done
    rm -rf "$dir"
}

case "${1:-}" in
start) start "$2" ;;
stop) stop "$2" ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 64 ;;
esac

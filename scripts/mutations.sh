#!/usr/bin/env bash
# Proves the simulation bites: re-introduces, one at a time, each data-loss defect that issues 11
# and 15 found (and a record trusted without its rows' stamps after a restore, and the defects that
# issue 16's chunked pages, pipelined pushes and push transactions could have), runs the
# simulation's default seeds, and expects it to fail. The sources are restored after each
# mutation, whatever happens. Usage: scripts/mutations.sh [SEEDS]   (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-10000}
backup=$(mktemp -d)
trap 'for f in FencedPush BatchPlan LeaseMachine; do cp "$backup"/$f.swift Sources/OutboxRelay/ 2>/dev/null; done; rm -rf "$backup"' EXIT
cp Sources/OutboxRelay/FencedPush.swift Sources/OutboxRelay/BatchPlan.swift Sources/OutboxRelay/LeaseMachine.swift "$backup"/

mutate() { # name, python code editing the file named by sys.argv[1], file
    python3 - "$3" <<PY
import sys
path = sys.argv[1]
s = open(path).read()
def swap(old, new):  # the first occurrence of old, which must be there, becomes new
    global s
    assert old in s, old
    s = s.replace(old, new, 1)
$2
open(path, "w").write(s)
PY
}

record_before_push='
start = s.index("public static let pushScript")
end = s.index("public static let smallPushScript")
head, script, tail = s[:start], s[start:end], s[end:]
record = """        if ARGV[4] == '"'"'1'"'"' then
          redis.call('"'"'APPEND'"'"', KEYS[2], redis.call('"'"'GET'"'"', KEYS[5]))
          redis.call('"'"'DEL'"'"', KEYS[5])
          redis.call('"'"'EXPIRE'"'"', KEYS[2], ARGV[2])
        else
          redis.call('"'"'RENAME'"'"', KEYS[5], KEYS[2])
        end
"""
assert record in script
script = script.replace(record, "", 1)
checks = "        if not wrong then wrong = expect(KEYS[2], '"'"'string'"'"') end\n"
assert checks in script
script = script.replace(checks, record + checks, 1)
s = head + script + tail
'
# The same in the small push script (issue 16 kept it for batches of few bytes).
small_record_before_push='
start = s.index("public static let smallPushScript")
head, small = s[:start], s[start:]
record = """        if ARGV[5] == '"'"'1'"'"' then
          redis.call('"'"'APPEND'"'"', KEYS[2], ARGV[3])
          redis.call('"'"'EXPIRE'"'"', KEYS[2], ARGV[2])
        else
          redis.call('"'"'SET'"'"', KEYS[2], ARGV[3], '"'"'EX'"'"', ARGV[2])
        end
"""
assert record in small
small = small.replace(record, "", 1)
fence = "then return redis.error_reply('"'"'FENCED lease taken over by token '"'"' .. tostring(seen)) end\n"
assert fence in small
small = small.replace(fence, fence + record, 1)
check = "        if wrong then return wrong end\n"
assert check in small
small = small.replace(check, "", 1)
s = head + small
'
# Issue 16: a push transaction whose refusal leaves its LPUSHed jobs in the queues.
refusal_without_undo='
swap("redis.call('"'"'LTRIM'"'"', KEYS[5 + q], tonumber(ARGV[5 + 2 * q]), -1)", "local _ = 0")
'
# Issue 16: a small push whose queue refused its LPUSH (wrong type) leaves the lists it pushed
# before that one.
small_refusal_without_undo='
swap("            takeBack(q - 1)\n", "")
'
# Issue 16: a page's pipelined push that runs although the push before it did not land.
pipelined_push_unchecked='
swap("          if last == '"'"''"'"' then return true end\n", "          if true then return true end\n")
'
fence_without_database='
swap("        \"" + chr(92) + "(system):" + chr(92) + "(database)\"", "        system")
'
queues_by_string='
swap("var queueIndex: [[UInt8]: Int] = [:]", "var queueIndex: [String: Int] = [:]")
swap("let name = Array(job.queue.utf8)", "let name = job.queue")
'
# A record trusted without its rows' stamps after a restore.
record_without_stamps='
swap("guard !alreadyPushed.contains(row) else { continue }", "guard !alreadyPushed.contains(id: row.id) else { continue }")
'
# Issue 15: a push too few replicas acknowledged (WAIT) taken as pushed, so its rows get marked.
unconfirmed_as_pushed='
swap("        case .unconfirmed(let why):\n            // Not marked and not in the ledger", "        case .unconfirmed:\n            chunks?.removeFirst()\n            ledger.pushed(chunk)\n            pageDone.append(chunk)\n            return pushNextChunk()\n        case .unconfirmed(let why) where false:\n            // Not marked")
'
# Issue 16: a chunk of a page left out of the ledger, so the next chunk's record does not name it.
chunk_not_in_ledger='
swap("            chunks?.removeFirst()\n            ledger.pushed(chunk)\n", "            chunks?.removeFirst()\n            if chunks?.isEmpty ?? true { ledger.pushed(chunk) }\n")
'
# Issue 16: a refused chunk marked with the page's chunks before it.
refused_chunk_marked='
swap("            unmarked = Self.marks(of: pageDone)\n            pageDone = []\n            state = .relaying(.draining)", "            unmarked = Self.marks(of: pageDone + [chunk])\n            pageDone = []\n            state = .relaying(.draining)")
'
# Issue 16: a push sent without waiting, refused, yet marked with the chunks before it.
refused_push_in_flight_marked='
swap("                if refusal == nil { refusal = reason }\n", "                if refusal == nil { refusal = reason; landed.append(chunk) }\n")
'
# Issue 16: a push sent without waiting left out of the ledger once answered.
push_in_flight_not_in_ledger='
swap("                ledger.pushed(chunk)\n                landed.append(chunk)\n", "                landed.append(chunk)\n")
'

run() { # name, file, mutation
    echo "== mutation: $1"
    mutate "$1" "$3" "$2"
    if SIM_SEEDS=$seeds swift test --filter 'SimulationTests.SimulationTests/seedsKeepTheDeliveryPromise' > "$backup/$1.log" 2>&1; then
        echo "   NOT CAUGHT: the simulation passed with this defect"
        status=1
    else
        grep -m1 -o 'seed [0-9]* broke the delivery promise: .*' "$backup/$1.log" | cut -c1-200 | sed 's/^/   caught: /'
    fi
    cp "$backup/$(basename "$2")" "$2"
}

status=0
run record-before-push Sources/OutboxRelay/FencedPush.swift "$record_before_push"
run small-record-before-push Sources/OutboxRelay/FencedPush.swift "$small_record_before_push"
run refusal-without-undo Sources/OutboxRelay/FencedPush.swift "$refusal_without_undo"
run small-refusal-without-undo Sources/OutboxRelay/FencedPush.swift "$small_refusal_without_undo"
run pipelined-push-unchecked Sources/OutboxRelay/FencedPush.swift "$pipelined_push_unchecked"
run fence-without-database Sources/OutboxRelay/FencedPush.swift "$fence_without_database"
run queues-by-string Sources/OutboxRelay/BatchPlan.swift "$queues_by_string"
run unconfirmed-as-pushed Sources/OutboxRelay/LeaseMachine.swift "$unconfirmed_as_pushed"
run record-without-stamps Sources/OutboxRelay/BatchPlan.swift "$record_without_stamps"
run chunk-not-in-ledger Sources/OutboxRelay/LeaseMachine.swift "$chunk_not_in_ledger"
run refused-chunk-marked Sources/OutboxRelay/LeaseMachine.swift "$refused_chunk_marked"
run refused-push-in-flight-marked Sources/OutboxRelay/LeaseMachine.swift "$refused_push_in_flight_marked"
run push-in-flight-not-in-ledger Sources/OutboxRelay/LeaseMachine.swift "$push_in_flight_not_in_ledger"
exit $status

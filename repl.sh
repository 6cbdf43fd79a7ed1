#!/bin/bash
# repl.sh: --redis-wait-replicas 1 with a real replica that is SIGSTOPped mid-pass (WAIT times out) and resumed; must stay exact
SRV=/tmp/break2/srv2; . $SRV/env; B=/work/wt-break/.build/release/outbox-relay; db=$OUTBOX_TEST_DATABASE_URL; R=$OUTBOX_TEST_REDIS_PORT
RP=$((R+7)); mkdir -p /tmp/break2/replica; redis-server --port $RP --replicaof 127.0.0.1 $R --dir /tmp/break2/replica --save '' --appendonly no --daemonize yes --pidfile /tmp/break2/replica/pid --logfile /tmp/break2/replica/log
sleep 1; t=rp; SRV=$SRV /tmp/break2/fillx.sh $t $((3000*5)) 3000; sleep 1
redis-cli -p $R INFO replication | grep connected_slaves
$B run --database-url "$db" --redis-url "$OUTBOX_TEST_REDIS_URL" --table $t --redis-wait-replicas 1 --redis-wait-timeout 0.3 --batch-size 2 > /tmp/break2/repl.log 2>&1 & pid=$!
for i in 1 2 3 4; do sleep 0.7; kill -STOP $(cat /tmp/break2/replica/pid); m1=$(psql -qtA "$db" -c "SELECT count(*) FROM $t WHERE enqueued_at IS NOT NULL"); sleep 3; m2=$(psql -qtA "$db" -c "SELECT count(*) FROM $t WHERE enqueued_at IS NOT NULL"); kill -CONT $(cat /tmp/break2/replica/pid); echo "stopped replica: marked $m1 -> $m2 during 3s"; done
for s in $(seq 1 60); do sleep 1; n=$(psql -qtA "$db" -c "SELECT count(*) FROM $t WHERE enqueued_at IS NULL"); [ $n = 0 ] && break; done; echo "pending=$n after ${s}s"
kill -0 $pid && echo alive; kill $pid; wait $pid; echo exit=$?
echo "unconfirmed logged: $(grep -ci 'replicas acknowledged\|unconfirmed' /tmp/break2/repl.log)"
python3 /tmp/break2/check.py "$db" $R $t
redis-cli -p $RP shutdown nosave >/dev/null 2>&1

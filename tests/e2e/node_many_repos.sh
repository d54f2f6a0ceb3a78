#!/usr/bin/env bash
# Many repositories reach a fresh node without a storm (issue 20, item 5).
# Node a holds 40 small repositories; a fresh node b must replicate all of
# them with no failed session, no warn line in either log and at most 8
# connections: each finished pull's stream carries b's next pull from a.
# (One connection per pull used to run into a's per-source connection rate,
# 10/s with a burst of 20: "stream closed", a warn line each, retried.)
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

N=40
make_repo "$TMP/src" 1
for i in $(seq 1 $N); do
  expect 0 "$GUTS" --data "$TMP/a" import "many/r$i" "$TMP/src"
done
# keys: every repository's "key objects fingerprint refs_digest".
keys() { "$GUTS" --data "$1" status 2>/dev/null | awk '$1 ~ /^many\// && NF >= 5 {print $1, $2, $4, $5}' | sort; }
want=$(keys "$TMP/a")
[ "$(wc -l <<<"$want")" -eq $N ] || fail "a holds $(wc -l <<<"$want") of $N repositories"
all_there() { [ "$(keys "$TMP/b")" = "$want" ]; }

node_start a
wait_until 20 "a writes its status" test -f "$TMP/a/node/status.json"
node_start b
wait_until 60 "b replicates all $N repositories" all_there
touch "$TMP/mark"
wait_until 10 "b writes its status again" test "$TMP/b/node/status.json" -nt "$TMP/mark"
ok=$(node_counter b sessions_ok) failed=$(node_counter b sessions_failed)
conns=$(node_counter b tcp_connected)
echo "b: $ok sessions ok, $failed failed, $conns connections"
[ "$ok" -ge $N ] || fail "b finished $ok sessions for $N repositories"
[ "$failed" -eq 0 ] || fail "b had $failed failed sessions"
[ "$conns" -le 8 ] || fail "b opened $conns connections for $N repositories"
if grep ' warn ' "$TMP/a.log" "$TMP/b.log" | grep -v 'running open'; then
  fail "warn lines in the logs"
fi
export_check b many/r$N "$TMP/src"

# The local-write poll reads only the environments whose txnid moved: an
# import into one of the running node's many repositories, and a new one,
# must still be noticed and replicated.
git -C "$TMP/src" checkout -q main
printf 'one more\n' >>"$TMP/src/README"
git -C "$TMP/src" commit -q -am "after the start"
expect 0 "$GUTS" --data "$TMP/a" import many/r17 "$TMP/src"
expect 0 "$GUTS" --data "$TMP/a" import many/new "$TMP/src"
want=$(keys "$TMP/a")
[ "$(wc -l <<<"$want")" -eq $((N + 1)) ] || fail "a holds $(wc -l <<<"$want") repositories"
wait_until 30 "b replicates the import into many/r17 and the new many/new" all_there
export_check b many/r17 "$TMP/src"
node_stop a
node_stop b
echo "ok"

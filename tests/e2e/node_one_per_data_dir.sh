#!/usr/bin/env bash
# One guts-node per data dir (issue 13, item 3): a second node started on a
# data dir a node runs on exits 1 at once with one line naming the first's
# pid, and leaves the first untouched: its status.json stays, its node id
# and incarnation are not announced twice. After the first stops (even by
# SIGKILL: the lock is the kernel's flock, dropped with the process) a new
# node starts on the same data dir.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

node_start a
wait_until 20 "a writes status.json" test -s "$TMP/a/node/status.json"
first=${NODE_PID[a]}

# second: same data dir, another port (so only the lock can stop it)
rc=0
timeout 30 "$GUTS_NODE" --data "$TMP/a" --iface lo --interval-ms "$NODE_INTERVAL_MS" \
  >"$TMP/second.out" 2>"$TMP/second.err" || rc=$?
[ $rc -eq 1 ] || { cat "$TMP/second.err" >&2; fail "second node exited $rc, want 1"; }
[ "$(wc -l <"$TMP/second.err")" -eq 1 ] || { cat "$TMP/second.err" >&2; fail "second node: not one line"; }
grep -q "in use by another guts-node (pid $first)" "$TMP/second.err" ||
  fail "second node does not name pid $first: $(cat "$TMP/second.err")"
node_alive a
[ -s "$TMP/a/node/status.json" ] || fail "the second node removed the first's status.json"
grep -q "\"pid\": $first" "$TMP/a/node/status.json" || fail "status.json is not the first node's"
expect 0 "$GUTS" --data "$TMP/a" status
grep -q "pid $first" "$TMP/out" || fail "guts status does not show the first node: $(cat "$TMP/out")"

# A killed holder leaves no lock behind.
node_kill9 a
node_restart a
wait_until 20 "restarted a writes status.json" grep -q "\"pid\": ${NODE_PID[a]}" "$TMP/a/node/status.json"
node_stop a
echo "ok"

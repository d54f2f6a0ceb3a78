#!/usr/bin/env bash
# Backpressure: a receiver that stops reading (SIGSTOP) in the middle of a
# transfer makes the sender stop producing, not buffer: the sender's
# anonymous memory stays bounded while the receiver is frozen, the sender
# keeps answering announces, and once the receiver resumes (SIGCONT) the
# transfer completes. Needs the zlib bundle (a transfer long enough to
# freeze; skipped when absent).
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

bundle="${GUTS_SRC:-$(dirname "$0")/../..}/../shared/data/zlib.bundle"
[ -f "$bundle" ] || { echo "no $bundle: skipped" >&2; exit 77; }
src="$TMP/zlib.git"
git clone -q --mirror "$bundle" "$src"
expect 0 "$GUTS" --data "$TMP/a" import madler/zlib "$src"
# Under AddressSanitizer freed blocks wait in a 256 MB quarantine before
# reuse, so RssAnon would measure allocation churn, not what a holds: the
# quarantine is off for this test (other tests keep it).
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0" node_start a
wait_until 10 "a up" test -f "$TMP/a/node/status.json"
anon() { awk '$1 == "RssAnon:" {print $2}' "/proc/$1/status"; }
base=$(anon "${NODE_PID[a]}")

node_start b
partial() {
  local s; s=$(repo_state "$TMP/b" madler/zlib)
  [ -n "$s" ] && [ "${s%% *}" -gt 0 ]
}
wait_until 60 "b starts receiving" partial
kill -STOP "${NODE_PID[b]}"
# Frozen for 3 s: a must stop producing for b (bounded queue) and stay live.
# Its anonymous memory must not grow after the first half second (the queue
# is full by then); without sanitizers it must also stay under 64 MB.
sleep 0.5
first=$(anon "${NODE_PID[a]}"); peak=$first
end=$((SECONDS + 3))
while [ $SECONDS -lt $end ]; do
  m=$(anon "${NODE_PID[a]}"); [ "$m" -gt "$peak" ] && peak=$m
  sleep 0.05
done
node_alive a
kill -CONT "${NODE_PID[b]}"
echo "a's RssAnon: $base KB idle, $first KB once b froze, peak $peak KB while frozen"
[ $((peak - first)) -lt 8192 ] || fail "a's memory grew by $((peak - first)) KB with a frozen receiver"
if ! ldd "$GUTS_NODE" | grep libasan >/dev/null; then  # not -q: an early exit SIGPIPEs ldd (pipefail)
  [ "$peak" -lt 65536 ] || fail "a's RssAnon reached $peak KB with a frozen receiver"
fi
wait_until 120 "b completes after resuming" repos_equal madler/zlib "$TMP/a" "$TMP/b"
export_check b madler/zlib "$src"
node_stop a
node_stop b
echo "ok"

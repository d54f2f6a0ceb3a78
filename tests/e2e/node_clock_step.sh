#!/usr/bin/env bash
# A wall clock stepped either way changes no duration in the node (issue
# 20, item 4). Node a runs under libfaketime (Debian package faketime) with
# its wall clock read from a file and the monotonic clock left alone, and
# a connection rate of 1/s (a bucket of 2). Three connections from
# 127.0.0.1 empty its bucket; then a's wall clock steps back a day, and a
# fresh node b on 127.0.0.1 must still replicate a's repository: with rate
# limits timed by the wall clock the bucket would not refill for a day.
# Then the clock steps forward two days and a new commit on a must reach b
# as well.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

lib=
for f in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
  [ -f "$f" ] && lib=$f && break
done
[ -n "$lib" ] || { echo "libfaketime not installed (Debian package faketime): skipped" >&2; exit 77; }

PORT_A=7341
make_repo "$TMP/src" 2
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/src"
echo "+0" >"$TMP/clock"
# FAKETIME_NO_CACHE: the file is read at every clock call, so a step takes
# effect at once; the monotonic clock stays real.
# An ASan build wants its runtime first among the libraries: with
# libfaketime preloaded it must be told not to check.
FAKETIME_TIMESTAMP_FILE="$TMP/clock" FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1 \
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
  LD_PRELOAD="$lib" node_start a --listen 127.0.0.1:$PORT_A --max-conn-rate 1
wait_until 20 "a writes its status" test -f "$TMP/a/node/status.json"

# Empty a's bucket for 127.0.0.1: three connections within a second.
/usr/bin/python3 - "$PORT_A" <<'PY'
import socket, sys
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    s.close()
PY
wait_until 10 "a rate-limits the third connection" counter_at_least a rate_limited_conns 1

# wall_offset_h: a's wall clock (status.json updated_unix_ms) minus ours, hours.
wall_offset_h() {
  /usr/bin/python3 -c '
import json, sys, time
d = json.load(open(sys.argv[1]))
print(round((d["updated_unix_ms"] / 1000 - time.time()) / 3600))' "$TMP/a/node/status.json"
}
stepped() { [ "$(wall_offset_h)" = "$1" ]; }

echo "-1d" >"$TMP/clock"
wait_until 10 "a's wall clock steps back a day" stepped -24
node_start b
wait_until 15 "b replicates alice/repo after a's clock stepped back" \
  repos_equal alice/repo "$TMP/a" "$TMP/b"

echo "+1d" >"$TMP/clock"
wait_until 10 "a's wall clock steps forward two days" stepped 24
add_commit "$TMP/src" "after the step forward"
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/src"
wait_until 15 "b gets the new commit after a's clock stepped forward" \
  repos_equal alice/repo "$TMP/a" "$TMP/b"
export_check b alice/repo "$TMP/src"
node_stop a
node_stop b
echo "ok"

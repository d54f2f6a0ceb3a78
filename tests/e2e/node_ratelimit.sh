#!/usr/bin/env bash
# Per-source token buckets (issue 7, "Limits"). Inside a private network
# namespace node a runs with --max-dgram-rate 50 --max-conn-rate 10 while one
# source (127.0.0.2) sends it thousands of datagrams and opens hundreds of
# connections as fast as it can. a counts the excess in status.json
# (rate_limited_dgrams, rate_limited_conns), and node b, another source
# (127.0.0.1), still replicates a's repository during the flood. Bad flag
# values fail at start.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

expect 2 "$GUTS_NODE" --data "$TMP/x" --max-dgram-rate -1
grep -q -- "--max-dgram-rate" "$TMP/err" || fail "no flag in the error: $(cat "$TMP/err")"
expect 2 "$GUTS_NODE" --data "$TMP/x" --max-conn-rate 10x

PORT_A=7311
make_repo "$TMP/src" 4
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/src"
node_start a --listen 127.0.0.1:$PORT_A --max-dgram-rate 50 --max-conn-rate 10
wait_until 20 "a writes its status" test -f "$TMP/a/node/status.json"

# The flood: 40 s at most, stopped as soon as b has replicated.
cat >"$TMP/flood.py" <<'PY'
import os, socket, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
deadline = time.time() + 40
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.2", 0))
junk = os.urandom(200)
while time.time() < deadline and not os.path.exists(stop):
    for _ in range(200):
        try:
            u.sendto(junk, ("127.0.0.1", port))
        except OSError:
            pass
    for _ in range(5):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.settimeout(0.2)
        try:
            t.bind(("127.0.0.2", 0))
            t.connect(("127.0.0.1", port))
        except OSError:
            pass
        t.close()
    time.sleep(0.01)
PY
/usr/bin/python3 "$TMP/flood.py" "$PORT_A" "$TMP/stop" &
flood=$!
trap 'touch "$TMP/stop"; wait $flood 2>/dev/null || true; netns_cleanup' EXIT

limited() {
  /usr/bin/python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["counters"]
print("a: %d datagrams and %d connections rate-limited"
      % (c["rate_limited_dgrams"], c["rate_limited_conns"]))
sys.exit(0 if c["rate_limited_dgrams"] > 1000 and c["rate_limited_conns"] > 20 else 1)
' "$TMP/a/node/status.json"
}
wait_until 15 "a counts the flood as rate-limited" limited
limited

node_start b
wait_until 30 "b replicates alice/repo during the flood" repos_equal alice/repo "$TMP/a" "$TMP/b"
kill -0 $flood 2>/dev/null || fail "the flood ended before b replicated"
touch "$TMP/stop"
wait $flood || true
export_check b alice/repo "$TMP/src"
node_stop a
node_stop b
echo "ok"

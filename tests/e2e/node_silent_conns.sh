#!/usr/bin/env bash
# Silent connections lock nobody out (issue 20, item 3). In a private
# network namespace a silent client on 127.0.0.2 keeps connections open to
# a node and never sends a byte, reopening each one the node closes:
#   open node a: 8 of them, more than a's 4 serve slots (which a connection
#     used to take, for 30 s, before asking for anything);
#   keyed node c: 64 of them, opened under c's rate limit, a whole
#     connection table (a non-member's connections used to hold it for 60 s).
# Meanwhile a real peer (b, d) on 127.0.0.1 starts and must replicate the
# repository within 10 s, and the node counts the silent connections it
# closed (status.json tcp_handshake_timeouts, tcp_refused_source,
# tcp_evicted; `guts status` shows them).
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

cat >"$TMP/silent.py" <<'PY'
import os, select, socket, sys, time
port, want, rate, stop = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
deadline = time.time() + 60
conns, next_open = [], 0.0
while time.time() < deadline and not os.path.exists(stop):
    now = time.time()
    if len(conns) < want and now >= next_open:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.2", 0))
        t.setblocking(False)
        try:
            t.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            t.close()
            t = None
        if t is not None:
            conns.append(t)
        next_open = now + 1.0 / rate
    r, _, _ = select.select(conns, [], [], 0.02) if conns else ([], [], [])
    for t in r:  # closed by the node (or refused): open another
        try:
            if t.recv(1 << 16):
                continue
        except BlockingIOError:
            continue
        except OSError:
            pass
        conns.remove(t)
        t.close()
PY

# silent PORT COUNT RATE: run the silent client until $TMP/stop-PORT exists.
silent() {
  /usr/bin/python3 "$TMP/silent.py" "$1" "$2" "$3" "$TMP/stop-$1" &
  EXTRA_PIDS+=($!)
}

# st NAME EXPR: a Python assertion on node NAME's status.json counters (c).
st() {
  /usr/bin/python3 -c 'import json,sys; c = json.load(open(sys.argv[1]))["counters"]; sys.exit(0 if ('"$2"') else 1)' \
    "$TMP/$1/node/status.json" 2>/dev/null
}

make_repo "$TMP/src" 2

# Open node: more silent connections than serve slots.
PORT_A=7321
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/src"
node_start a --listen 127.0.0.1:$PORT_A
wait_until 20 "a writes its status" test -f "$TMP/a/node/status.json"
silent $PORT_A 8 8
wait_until 10 "a accepts the silent connections" st a 'c["tcp_accepted"] >= 4'
node_start b
wait_until 10 "b replicates alice/repo past 8 silent connections" \
  repos_equal alice/repo "$TMP/a" "$TMP/b"
wait_until 10 "a counts the silent connections it closed" st a 'c["tcp_handshake_timeouts"] >= 4'
"$GUTS" --data "$TMP/a" status >"$TMP/status-a"
grep -q "silent past the handshake deadline" "$TMP/status-a" || { cat "$TMP/status-a" >&2; fail "guts status does not count the silent connections"; }
touch "$TMP/stop-$PORT_A"
export_check b alice/repo "$TMP/src"
node_stop a
node_stop b

# Keyed node: a non-member fills the connection table under the rate limit.
PORT_C=7331
expect 0 "$GUTS" keygen "$TMP/key"
expect 0 "$GUTS" --data "$TMP/c" import carol/repo "$TMP/src"
node_start c --listen 127.0.0.1:$PORT_C --key-file "$TMP/key" --max-conn-rate 100
wait_until 20 "c writes its status" test -f "$TMP/c/node/status.json"
silent $PORT_C 64 80
wait_until 10 "c accepts or refuses 64 silent connections" \
  st c 'c["tcp_accepted"] + c.get("tcp_refused_source", 0) >= 64'
node_start d --key-file "$TMP/key"
wait_until 10 "d replicates carol/repo past 64 silent connections" \
  repos_equal carol/repo "$TMP/c" "$TMP/d"
wait_until 10 "c counts the silent connections" \
  st c 'c["tcp_handshake_timeouts"] + c["tcp_refused_source"] + c["tcp_evicted"] >= 32'
touch "$TMP/stop-$PORT_C"
export_check d carol/repo "$TMP/src"
node_stop c
node_stop d
echo "ok"

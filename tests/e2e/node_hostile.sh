#!/usr/bin/env bash
# Hostile input on every socket leaves the node running, with bounded memory:
# oversize datagrams (dropped unread and counted), garbage datagrams to the
# group and to the node's unicast port, a frame header announcing 2 GiB
# (connection closed before anything is allocated), garbage frames, and
# more connections than the cap. The status file is mode 0600. Then a
# second node still replicates from it. (The connection flood is answered
# by the core closing streams beyond its session limit, or by the daemon's
# cap of 64 connections, whichever comes first.)
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

node_start a --listen 127.0.0.1:7301
wait_until 10 "a up" test -f "$TMP/a/node/status.json"
[ "$(stat -c %a "$TMP/a/node/status.json")" = 600 ] || fail "status.json is not mode 0600"

/usr/bin/python3 - <<'PY'
import os, socket, time
g = ("239.255.71.71", 7171); u = ("127.0.0.1", 7301)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for dst in (g, u):
    s.sendto(b"\x00" * 1500, dst)                      # oversize
    s.sendto(b"\xdd\xff\xff\xff\xff", dst)             # msgpack array of 4G elements
    for n in range(200):
        s.sendto(os.urandom(n * 6 % 1400 + 1), dst)    # garbage
# 2 GiB frame header, then garbage frames, then a flood of connections.
c = socket.create_connection(u); c.sendall(b"\x7f\xff\xff\xff" + b"x" * 100)
c.settimeout(5); assert c.recv(10) == b"", "connection not closed after 2 GiB header"
c = socket.create_connection(u); c.sendall(b"\x00\x00\x00\x05hello" * 10)
conns = []
for i in range(100):
    try: conns.append(socket.create_connection(u, timeout=2))
    except OSError: pass
time.sleep(0.5)
for k in conns: k.close()
PY
node_alive a
oversize() {
  /usr/bin/python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["counters"]; sys.exit(0 if c["udp_rx_oversize"] >= 2 else 1)' "$TMP/a/node/status.json"
}
if ! (wait_until 10 "oversize datagrams counted" oversize); then
  grep -o '"udp_rx[a-z_]*": [0-9]*\|"tcp_[a-z_]*": [0-9]*' "$TMP/a/node/status.json" >&2
  exit 1
fi

src="$TMP/src"
make_repo "$src" 2
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
node_start b
wait_until 60 "b replicates from a after the abuse" repos_equal alice/repo "$TMP/a" "$TMP/b"
node_stop a
node_stop b
echo "ok"

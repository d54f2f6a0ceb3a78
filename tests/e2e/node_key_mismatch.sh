#!/usr/bin/env bash
# Key mismatches are visible: a (key 1), b (key 2) and c (open) share one
# multicast group and replicate nothing, and each says why: the first
# datagram refused from each source is logged at warn, the rest are counted
# per source in status.json ("refused"); the open node says it hears sealed
# traffic. With no peer at all for 30 s, a says refusals are the likely
# cause; when a node with its key comes, a says it hears a peer again.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

expect 0 "$GUTS" keygen "$TMP/k1"
expect 0 "$GUTS" keygen "$TMP/k2"
node_start a --listen 127.0.0.1:7201 --key-file "$TMP/k1"
node_start b --listen 127.0.0.1:7202 --key-file "$TMP/k2"
node_start c --listen 127.0.0.1:7203

# refused NAME ADDRESS REASON MIN: NAME's status lists ADDRESS refused for
# REASON at least MIN times.
refused() {
  /usr/bin/python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["refused"]
sys.exit(0 if any(x["address"] == sys.argv[2] and x["reason"] == sys.argv[3] and x["count"] >= int(sys.argv[4]) for x in r) else 1)' \
    "$TMP/$1/node/status.json" "$2" "$3" "$4" 2>/dev/null
}
wait_until 30 "a counts b's datagrams as another key" refused a 127.0.0.1:7202 "key mismatch" 3
wait_until 30 "a counts c's datagrams as unsealed" refused a 127.0.0.1:7203 "not sealed" 3
wait_until 30 "c counts a's datagrams as sealed" refused c 127.0.0.1:7201 "sealed, this node is open" 3
[ "$(grep -c 'warn  datagram from 127.0.0.1:7202 refused: key mismatch' "$TMP/a.log")" = 1 ] ||
  fail "a: not exactly one warning for b"
[ "$(grep -c 'warn  datagram from 127.0.0.1:7203 refused: .*runs open' "$TMP/a.log")" = 1 ] ||
  fail "a: not exactly one warning for c"
[ "$(grep -c 'warn  datagram from 127.0.0.1:7201 is sealed with a cluster key and this node runs open' "$TMP/c.log")" = 1 ] ||
  fail "c: not exactly one warning for a"
[ "$(node_status_peers a)" = 0 ] || fail "a has a peer"
expect 0 "$GUTS" --data "$TMP/a" status
grep -Eq '^refused datagrams from 127.0.0.1:7202: key mismatch \([0-9]+\)$' "$TMP/out" ||
  fail "guts status does not show b refused: $(cat "$TMP/out")"
wait_until 60 "a says it is alone because of refusals" \
  grep -q 'no peer heard for 30 s, but datagrams were refused' "$TMP/a.log"
# a node with a's key: a says it hears a peer again, and by which path
node_start d --listen 127.0.0.1:7204 --key-file "$TMP/k1"
wait_until 30 "a says it hears a peer again" \
  grep -Eq 'hearing 1 peer again after [0-9]+ s alone' "$TMP/a.log"
grep -q 'joined (multicast)' "$TMP/a.log" || fail "a: no 'joined (multicast)' line for d"
node_stop d
node_stop a
node_stop b
node_stop c
echo "ok"

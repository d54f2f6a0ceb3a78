#!/usr/bin/env bash
# Peer exchange across two segments with no multicast path between them:
# two named namespaces (segment A: a1, a2 on 10.71.1.2; segment B: b1, b2
# on 10.71.2.2), each joined by a veth pair to the test's own namespace,
# which routes unicast between them and has no multicast routing (TTL 1
# never crosses it anyway). Only b1 knows anybody: --peer a1. The nodes
# that know nobody (a2, b2) must come to hear the other segment's nodes by
# unicast, learned from PEERS, and all four converge both ways.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

A="guts-e2e-$$-sa"; B="guts-e2e-$$-sb"
sysctl -qw net.ipv4.ip_forward=1 2>/dev/null || echo 1 >/proc/sys/net/ipv4/ip_forward ||
  { echo "cannot enable forwarding: skipped" >&2; exit 77; }
i=1
for ns in "$A" "$B"; do
  netns_add "$ns"
  ip link add "gsr$i" type veth peer name v0 netns "$ns" || { echo "no veth: skipped" >&2; exit 77; }
  ip addr add "10.71.$i.1/24" dev "gsr$i"
  ip link set "gsr$i" up
  ip -n "$ns" addr add "10.71.$i.2/24" dev v0
  ip -n "$ns" link set v0 up multicast on
  ip -n "$ns" route add default via "10.71.$i.1"
  ip -n "$ns" route add 224.0.0.0/4 dev v0
  i=$((i + 1))
done

# peer_ids NAME: the node ids NAME lists as peers, one per line.
peer_ids() {
  /usr/bin/python3 -c '
import json, sys
for p in json.load(open(sys.argv[1]))["peers"]: print(p["id"])' "$TMP/$1/node/status.json" 2>/dev/null
}
node_id() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$TMP/$1/node/status.json"; }
# hears NAME OTHER...: NAME lists every OTHER as a peer.
hears() {
  local name=$1 o ids; shift
  ids=$(peer_ids "$name") || return 1
  for o in "$@"; do grep -qx "${NODE_ID[$o]}" <<<"$ids" || return 1; done
}

make_repo "$TMP/srca" 3
make_repo "$TMP/srcb" 2
expect 0 "$GUTS" --data "$TMP/a2" import alice/left "$TMP/srca"
expect 0 "$GUTS" --data "$TMP/b2" import bob/right "$TMP/srcb"
node_start_ns "$A" v0 a1 --listen 10.71.1.2:7301
node_start_ns "$A" v0 a2 --listen 10.71.1.2:7302
node_start_ns "$B" v0 b2 --listen 10.71.2.2:7402
node_start_ns "$B" v0 b1 --listen 10.71.2.2:7401 --peer 10.71.1.2:7301
declare -A NODE_ID=()
for n in a1 a2 b1 b2; do
  wait_until 20 "$n writes its status" test -s "$TMP/$n/node/status.json"
  NODE_ID[$n]=$(node_id "$n")
done
# every node comes to hear the three others, the two that know nobody included
wait_until 60 "a2 hears b1 and b2" hears a2 a1 b1 b2
wait_until 60 "b2 hears a1 and a2" hears b2 b1 a1 a2
wait_until 60 "a1 hears b2" hears a1 a2 b1 b2
wait_until 60 "b1 hears a2" hears b1 b2 a1 a2
# some node across the cut was met at an address learned from PEERS, and
# its join line says so (a node lists a peer in its status as soon as it
# knows it, and may log the join a moment later: polled, not read once)
learned_line() { cat "$TMP"/a1.log "$TMP"/a2.log "$TMP"/b1.log "$TMP"/b2.log | grep -q 'joined (unicast, learned)'; }
wait_until 30 "a 'joined (unicast, learned)' line in some log" learned_line
wait_until 90 "alice/left reaches segment B" \
  repos_equal alice/left "$TMP/a2" "$TMP/a1" "$TMP/b1" "$TMP/b2"
wait_until 90 "bob/right reaches segment A" \
  repos_equal bob/right "$TMP/b2" "$TMP/b1" "$TMP/a1" "$TMP/a2"
export_check b2 alice/left "$TMP/srca"
export_check a2 bob/right "$TMP/srcb"
[ "$(node_counter a2 learned)" -ge 1 ] || [ "$(node_counter b2 learned)" -ge 1 ] ||
  fail "nobody learned an address from PEERS"
for n in a1 a2 b1 b2; do node_stop "$n"; done
echo "ok"

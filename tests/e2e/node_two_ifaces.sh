#!/usr/bin/env bash
# Every interface: a node with two interfaces bridges two segments by
# multicast alone, and joins an interface added after it started.
#
# The test's own namespace is node b's host, with no --iface: a veth leg
# gsi1 to segment 1 (namespace S1, node a, 10.72.1.0/24) and gsi2 to
# segment 2 (S2, node c, 10.72.2.0/24). Nothing forwards between the
# segments (ip_forward stays 0, a and c have no route off their link), so
# a's repository can reach c only through b, by b's copy. Then a third leg
# gsi3 to S3 (node d, 10.72.3.0/24) is made while b runs: b must join the
# group on it, hear d, and carry d's repository to a and c. A node e beside
# b with --iface gsi1 --iface lo joins those only.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 0 ] || echo 0 >/proc/sys/net/ipv4/ip_forward

# segment I NS: namespace NS, veth gsiI here (10.72.I.1) <-> v0 there (.2)
segment() {
  local i=$1 ns=$2
  netns_add "$ns"
  ip link add "gsi$i" type veth peer name v0 netns "$ns" || { echo "no veth: skipped" >&2; exit 77; }
  ip addr add "10.72.$i.1/24" dev "gsi$i"
  ip link set "gsi$i" up multicast on
  ip -n "$ns" addr add "10.72.$i.2/24" dev v0
  ip -n "$ns" link set v0 up multicast on
}
S1="guts-e2e-$$-s1"; S2="guts-e2e-$$-s2"; S3="guts-e2e-$$-s3"
segment 1 "$S1"
segment 2 "$S2"

node_id() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$TMP/$1/node/status.json"; }
# hears NAME OTHER: NAME lists OTHER as a peer heard by multicast
hears() {
  /usr/bin/python3 -c '
import json, sys
ps = json.load(open(sys.argv[1]))["peers"]
sys.exit(0 if any(p["id"] == sys.argv[2] and p["via"] != "unicast" for p in ps) else 1)' \
    "$TMP/$1/node/status.json" "$(node_id "$2")" 2>/dev/null
}

make_repo "$TMP/srca" 3
make_repo "$TMP/srcc" 2
make_repo "$TMP/srcd" 2
expect 0 "$GUTS" --data "$TMP/a" import alice/left "$TMP/srca"
expect 0 "$GUTS" --data "$TMP/c" import carol/right "$TMP/srcc"
expect 0 "$GUTS" --data "$TMP/d" import dave/late "$TMP/srcd"

node_start_ns "$S1" v0 a --listen 10.72.1.2:7301
node_start_ns "$S2" v0 c --listen 10.72.2.2:7302
NODE_IFACE= node_start b # every interface, both families, no --peer
for n in a b c; do wait_until 20 "$n writes its status" test -s "$TMP/$n/node/status.json"; done
grep -q 'joined group .* on .*gsi1.*gsi2\|joined group .* on .*gsi2.*gsi1' "$TMP/b.log" ||
  fail "b's start line does not name both legs: $(grep 'joined group' "$TMP/b.log")"
grep -q 'joined group .* on .*\blo\b' "$TMP/b.log" && fail "b joined on loopback beside real interfaces"
wait_until 30 "b hears a by multicast" hears b a
wait_until 30 "b hears c by multicast" hears b c
wait_until 30 "a hears b by multicast" hears a b
wait_until 30 "c hears b by multicast" hears c b
wait_until 90 "alice/left reaches c through b" repos_equal alice/left "$TMP/a" "$TMP/b" "$TMP/c"
wait_until 90 "carol/right reaches a through b" repos_equal carol/right "$TMP/c" "$TMP/b" "$TMP/a"
export_check c alice/left "$TMP/srca"
export_check a carol/right "$TMP/srcc"
# a and c never heard each other: b carried the repositories
/usr/bin/python3 -c '
import json, sys
ps = json.load(open(sys.argv[1]))["peers"]
sys.exit(1 if any(p["id"] == sys.argv[2] for p in ps) else 0)' \
  "$TMP/a/node/status.json" "$(node_id c)" || fail "a hears c directly: the segments are joined"

# --iface narrows: e, on b's host, named gsi1 (and lo) only: it hears a
# (and b, whose gsi1 copies loop back to it) by multicast, never c.
NODE_IFACE=gsi1 node_start e --iface lo
wait_until 20 "e writes its status" test -s "$TMP/e/node/status.json"
grep -q 'joined group .* on .*gsi1' "$TMP/e.log" || fail "e's start line: $(grep 'listening on' "$TMP/e.log")"
grep -q 'joined group .* on .*gsi2' "$TMP/e.log" && fail "e joined on gsi2, which it did not name"
wait_until 30 "e hears a by multicast" hears e a
wait_until 30 "e hears b by multicast" hears e b
hears e c && { cat "$TMP/e/node/status.json" >&2; fail "e hears c, on an interface it did not name"; }
node_stop e

# A third interface comes up while b runs.
segment 3 "$S3"
node_start_ns "$S3" v0 d --listen 10.72.3.2:7303
wait_until 30 "b joins the group on the new gsi3" grep -q 'joined group .* on gsi3' "$TMP/b.log"
wait_until 30 "b hears d on the new interface" hears b d
wait_until 90 "dave/late reaches a and c through b" \
  repos_equal dave/late "$TMP/d" "$TMP/b" "$TMP/a" "$TMP/c"
export_check a dave/late "$TMP/srcd"

# And b leaves it when it goes away.
ip link del gsi3
wait_until 30 "b leaves the group on the removed gsi3" grep -q 'left group .* on gsi3' "$TMP/b.log"
grep -q ' error ' "$TMP/b.log" && fail "b logged an error"
for n in a b c d; do node_stop "$n"; done
echo "ok"

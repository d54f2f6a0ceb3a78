#!/usr/bin/env bash
# No multicast at all: a node in a namespace with no route for the group
# (as in a container without a default route), or joined on an interface
# without the MULTICAST flag, starts anyway, says why in exactly one
# warning, and replicates by unicast to its --peer (before issue 14 it
# exited with "setsockopt IP_ADD_MEMBERSHIP: No such device"). When the
# route appears, the running nodes join the group without a restart.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
ip route del 224.0.0.0/4 dev lo

src="$TMP/src"
make_repo "$src" 3
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"

# No route for 239.255.71.71 and no --iface: the join fails with ENODEV.
NODE_IFACE=
node_start a --listen 127.0.0.1:7201 --peer 127.0.0.1:7202
node_start b --listen 127.0.0.1:7202 --peer 127.0.0.1:7201
wait_until 30 "a and b find each other by unicast" peers_at_least b 1
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
for n in a b; do
  [ "$(grep -c 'warn  no multicast (IP_ADD_MEMBERSHIP .*No such device' "$TMP/$n.log")" = 1 ] ||
    fail "$n: not exactly one warning naming the failed join"
  grep -q 'no multicast (' "$TMP/$n.log" || fail "$n: no warning"
done
grep -q 'error' "$TMP/a.log" && fail "a logged an error"

# The route comes back (a network coming up): the running nodes join the
# group without a restart, and a node that knows nobody finds them by
# multicast alone.
ip route add 224.0.0.0/4 dev lo
wait_until 30 "a joins the group once there is a route" \
  grep -q 'multicast available now: joined group 239.255.71.71:7171' "$TMP/a.log"
node_start d --listen 127.0.0.1:7204
wait_until 60 "d, with no --peer, gets alice/repo by multicast" repos_equal alice/repo "$TMP/a" "$TMP/d"
node_stop d

# An interface without the MULTICAST flag: the node says so and goes on.
ip route del 224.0.0.0/4 dev lo
ip link set lo multicast off
NODE_IFACE=lo
node_start c --listen 127.0.0.1:7203 --peer 127.0.0.1:7201
wait_until 60 "alice/repo replicated to c" repos_equal alice/repo "$TMP/a" "$TMP/c"
[ "$(grep -c 'warn  no multicast (interface lo has no MULTICAST flag)' "$TMP/c.log")" = 1 ] ||
  fail "c: not exactly one warning naming the interface"
export_check c alice/repo "$src"
node_stop a
node_stop b
node_stop c
echo "ok"

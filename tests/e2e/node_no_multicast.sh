#!/usr/bin/env bash
# No multicast at all: a node in a namespace where no interface has the
# MULTICAST flag, or told to join on one without it (--iface), starts
# anyway, says why in exactly one warning, and replicates by unicast to
# its --peer (before issue 14 it exited with "setsockopt IP_ADD_MEMBERSHIP:
# No such device"). When an interface gains the flag, the running nodes
# join the group on it without a restart. There is no route for the group
# at all (as in a container without a default route): joins and sends name
# the interface, so none is needed.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
ip route del 224.0.0.0/4 dev lo
ip link set lo multicast off

src="$TMP/src"
make_repo "$src" 3
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"

# No interface can carry multicast and no --iface: no group is joined.
NODE_IFACE=
node_start a --listen 127.0.0.1:7201 --peer 127.0.0.1:7202
node_start b --listen 127.0.0.1:7202 --peer 127.0.0.1:7201
wait_until 30 "a and b find each other by unicast" peers_at_least b 1
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
for n in a b; do
  [ "$(grep -c 'warn  no multicast (no interface is up with the MULTICAST flag' "$TMP/$n.log")" = 1 ] ||
    fail "$n: not exactly one warning naming the cause"
  grep -q 'no multicast (' "$TMP/$n.log" || fail "$n: no warning"
done
grep -q 'error' "$TMP/a.log" && fail "a logged an error"

# lo gets the MULTICAST flag (a network coming up): the running nodes join
# the group on it without a restart, still with no route, and a node that knows nobody finds them by
# multicast alone.
ip link set lo multicast on
wait_until 30 "a joins the group once lo can carry it" \
  grep -q 'joined group 239.255.71.71:7171 on lo' "$TMP/a.log"
grep -q 'multicast available now' "$TMP/a.log" || fail "a did not say multicast is available"
node_start d --listen 127.0.0.1:7204
wait_until 60 "d, with no --peer, gets alice/repo by multicast" repos_equal alice/repo "$TMP/a" "$TMP/d"
node_stop d

# An interface without the MULTICAST flag: the node says so and goes on.
ip link set lo multicast off
NODE_IFACE=lo
node_start c --listen 127.0.0.1:7203 --peer 127.0.0.1:7201
wait_until 60 "alice/repo replicated to c" repos_equal alice/repo "$TMP/a" "$TMP/c"
[ "$(grep -c 'warn  no multicast (interface lo is down or has no MULTICAST flag)' "$TMP/c.log")" = 1 ] ||
  fail "c: not exactly one warning naming the interface"
export_check c alice/repo "$src"
node_stop a
node_stop b
node_stop c
echo "ok"

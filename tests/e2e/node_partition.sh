#!/usr/bin/env bash
# A partition between two groups of nodes heals and converges. Two named
# network namespaces (group A: a1, a2 on 10.77.0.1; group B: b1 on 10.77.0.2)
# hang off a bridge in the test's own private namespace through veth pairs.
# nftables in both groups drops everything from the other side; each side
# keeps replicating internally and writes something the other lacks; the
# rules are removed and every node ends with everything.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v nft >/dev/null || { echo "nft not installed: skipped" >&2; exit 77; }

A="guts-e2e-$$-a"; B="guts-e2e-$$-b"
ip link add gbr0 type bridge mcast_snooping 0 || { echo "no bridge support: skipped" >&2; exit 77; }
ip link set gbr0 up
i=1
for ns in "$A" "$B"; do
  netns_add "$ns"
  ip link add "gvh$i" type veth peer name v0 netns "$ns"
  ip link set "gvh$i" master gbr0 up
  ip -n "$ns" addr add "10.77.0.$i/24" dev v0
  ip -n "$ns" link set v0 up multicast on
  ip -n "$ns" route add 224.0.0.0/4 dev v0
  i=$((i + 1))
done

# partition NS OTHER OTHER_NS: NS drops what comes from OTHER, and from
# OTHER_NS's IPv6 (link-local) addresses: the nodes speak both families
partition() {
  local ns=$1 other=$2 a6
  ip netns exec "$ns" nft add table inet gutspart
  ip netns exec "$ns" nft add chain inet gutspart in '{ type filter hook input priority 0; }'
  ip netns exec "$ns" nft add rule inet gutspart in ip saddr "$other" counter drop
  for a6 in $(ip -n "$3" -6 -o addr show dev v0 | awk '{print $4}' | cut -d/ -f1); do
    ip netns exec "$ns" nft add rule inet gutspart in ip6 saddr "$a6" counter drop
  done
}
heal() { ip netns exec "$1" nft delete table inet gutspart; }

src="$TMP/src"; srcb="$TMP/srcb"
make_repo "$src" 4
make_repo "$srcb" 2
expect 0 "$GUTS" --data "$TMP/a1" import alice/repo "$src"
node_start_ns "$A" v0 a1
node_start_ns "$A" v0 a2
node_start_ns "$B" v0 b1
wait_until 60 "alice/repo on all three" repos_equal alice/repo "$TMP/a1" "$TMP/a2" "$TMP/b1"

partition "$A" 10.77.0.2 "$B"
partition "$B" 10.77.0.1 "$A"
add_commit "$src" "written during the partition"
expect 0 "$GUTS" --data "$TMP/a1" import alice/repo "$src"
expect 0 "$GUTS" --data "$TMP/b1" import bob/side "$srcb"
wait_until 60 "group A replicates internally" repos_equal alice/repo "$TMP/a1" "$TMP/a2"
# The partition holds: b1 still lacks A's commit and A lacks bob/side.
[ "$(repo_state "$TMP/b1" alice/repo)" != "$(repo_state "$TMP/a1" alice/repo)" ] || fail "b1 got A's commit through the partition"
[ -z "$(repo_state "$TMP/a1" bob/side)" ] || fail "a1 got bob/side through the partition"

heal "$A"
heal "$B"
wait_until 90 "alice/repo converges after healing" repos_equal alice/repo "$TMP/a1" "$TMP/a2" "$TMP/b1"
wait_until 90 "bob/side converges after healing" repos_equal bob/side "$TMP/a1" "$TMP/a2" "$TMP/b1"
export_check b1 alice/repo "$src"
export_check a2 bob/side "$srcb"
for n in a1 a2 b1; do node_stop $n; done
echo "ok"

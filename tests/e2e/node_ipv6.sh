#!/usr/bin/env bash
# IPv6 only: three namespaces on one link (veths on a bridge in the test's
# own namespace) with IPv6 addresses and no IPv4 at all converge by the
# IPv6 group [ff12::7171]:7171; then, with that group dropped by nftables
# in every namespace, three fresh nodes converge by --peer [ADDR]:PORT
# alone, one of them naming its hub by a link-local address with its zone
# ([fe80::71:1%v0]:PORT). Last, a node on a host with IPv6 switched off
# (disable_ipv6) still starts, says so in one warning, and replicates over
# IPv4.
# Addresses are added with nodad (no duplicate address detection wait).
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

# no MLD querier here: the bridge floods the group rather than snoop
ip link add gs6br type bridge mcast_snooping 0 || { echo "no bridge: skipped" >&2; exit 77; }
ip link set gs6br up
NS=()
for i in 1 2 3; do
  ns="guts-e2e-$$-v6n$i"
  NS+=("$ns")
  netns_add "$ns"
  ip link add "gs6v$i" type veth peer name v0 netns "$ns" || { echo "no veth: skipped" >&2; exit 77; }
  ip link set "gs6v$i" master gs6br up
  ip -n "$ns" link set v0 up multicast on
  ip -n "$ns" -6 addr add "fd71::$i/64" dev v0 nodad || { echo "no IPv6: skipped" >&2; exit 77; }
  ip -n "$ns" -6 addr add "fe80::71:$i/64" dev v0 nodad
  [ -z "$(ip -n "$ns" -4 addr show dev v0)" ] || fail "v0 in $ns has an IPv4 address"
done

# an address is usable once it is no longer tentative
v6_ready() { ! ip -n "$1" -6 addr show dev v0 | grep -q tentative; }
for ns in "${NS[@]}"; do wait_until 20 "IPv6 addresses of $ns ready" v6_ready "$ns"; done

make_repo "$TMP/src1" 3
make_repo "$TMP/src3" 2
expect 0 "$GUTS" --data "$TMP/a" import alice/six "$TMP/src1"
expect 0 "$GUTS" --data "$TMP/c" import carol/six "$TMP/src3"

# 1. By the IPv6 group.
node_start_ns "${NS[0]}" v0 a --listen "[fd71::1]:7301"
node_start_ns "${NS[1]}" v0 b --listen "[fd71::2]:7302"
node_start_ns "${NS[2]}" v0 c --listen "[fd71::3]:7303"
wait_until 30 "a hears b and c" peers_at_least a 2
wait_until 90 "alice/six reaches b and c" repos_equal alice/six "$TMP/a" "$TMP/b" "$TMP/c"
wait_until 90 "carol/six reaches a and b" repos_equal carol/six "$TMP/c" "$TMP/a" "$TMP/b"
export_check b alice/six "$TMP/src1"
grep -q 'joined group .*\[ff12::7171\]:7171 on v0 (IPv6)' "$TMP/a.log" ||
  fail "a's start line: $(grep 'listening on' "$TMP/a.log")"
grep -q '"via": "multicast"' "$TMP/a/node/status.json" || fail "a hears nobody by multicast"
for n in a b c; do node_stop "$n"; done

# 2. Group dropped everywhere: --peer [ADDR]:PORT only (a star on p).
for ns in "${NS[@]}"; do
  command -v nft >/dev/null || { echo "no nft: skipped" >&2; exit 77; }
  ip netns exec "$ns" nft -f - <<'NFT' || { echo "nft refused the ruleset: skipped" >&2; exit 77; }
table inet nomcast6 {
  chain out { type filter hook output priority 0; ip6 daddr ff12::7171 drop; }
  chain in { type filter hook input priority 0; ip6 daddr ff12::7171 drop; }
}
NFT
done
make_repo "$TMP/srcq" 2
expect 0 "$GUTS" --data "$TMP/q" import quinn/six "$TMP/srcq"
# p listens on every address: r reaches it at its link-local one
node_start_ns "${NS[0]}" v0 p --listen "[::]:7401"
node_start_ns "${NS[1]}" v0 q --listen "[fd71::2]:7402" --peer "[fd71::1]:7401"
node_start_ns "${NS[2]}" v0 r --listen "[fd71::3]:7403" --peer "[fe80::71:1%v0]:7401"
wait_until 90 "quinn/six reaches p and r by unicast" repos_equal quinn/six "$TMP/q" "$TMP/p" "$TMP/r"
export_check r quinn/six "$TMP/srcq"
grep -q '"via": "multicast"\|"via": "both"' "$TMP/p/node/status.json" &&
  fail "p heard a peer by multicast through the firewall"
# status.json is rewritten once a second: it may predate the pull
p_sent_unicast() { [ "$(node_counter p dgrams_unicast)" -gt 0 ]; }
wait_until 10 "p sends by unicast" p_sent_unicast
for n in p q r; do node_stop "$n"; done

# 3. No IPv6 on the host: IPv4 alone, the node still starts.
for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6 \
  /proc/sys/net/ipv6/conf/lo/disable_ipv6; do
  echo 1 >"$f" || { echo "cannot disable IPv6: skipped" >&2; exit 77; }
done
NODE_IFACE=
node_start s
node_start t
expect 0 "$GUTS" --data "$TMP/s" import sam/four "$TMP/src1"
wait_until 90 "sam/four replicated over IPv4" repos_equal sam/four "$TMP/s" "$TMP/t"
grep -q ' error ' "$TMP/s.log" && fail "s logged an error"
[ "$(grep -c 'warn  no IPv6 on this host (net.ipv6.conf.all.disable_ipv6 is 1): IPv4 only' "$TMP/s.log")" = 1 ] ||
  fail "s: not exactly one warning that IPv6 is off: $(grep ' warn ' "$TMP/s.log")"
for n in s t; do node_stop "$n"; done
echo "ok"

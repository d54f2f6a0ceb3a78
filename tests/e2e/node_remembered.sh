#!/usr/bin/env bash
# Remembered peers: on a network without multicast (lo lacks the flag)
# b finds a through --peer, and both keep each other's address in
# DATA/node/peers. b restarted with no --peer at all finds a again from
# that file and catches up with what a got meanwhile. A damaged file (junk
# lines, an overlong line, a stale entry) costs nothing but those lines.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
ip route del 224.0.0.0/4 dev lo
ip link set lo multicast off
NODE_IFACE=

make_repo "$TMP/src" 3
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/src"
node_start a --listen 127.0.0.1:7201
node_start b --listen 127.0.0.1:7202 --peer 127.0.0.1:7201
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
node_stop b
grep -q '^127.0.0.1:7201 [0-9]*$' "$TMP/b/node/peers" || fail "b did not remember a: $(cat "$TMP/b/node/peers")"
[ "$(stat -c %a "$TMP/b/node/peers")" = 600 ] || fail "peers file is not 0600"
# damage around the good line
{
  echo 'junk'
  head -c 200 /dev/zero | tr '\0' x; echo
  echo '10.9.9.9:7000 1'
  echo "[::1]:7999 $(date +%s)" # an IPv6 entry (nobody there): tried as well
  echo "[fe80::1%lo]:7999 $(date +%s)" # link-local: never kept, skipped
  cat "$TMP/b/node/peers"
} >"$TMP/b/node/peers.new"
mv "$TMP/b/node/peers.new" "$TMP/b/node/peers"

# a moves on while b is down
make_repo "$TMP/src2" 2
expect 0 "$GUTS" --data "$TMP/a" import alice/second "$TMP/src2"

node_start b --listen 127.0.0.1:7202
wait_until 60 "b, restarted with no flags, gets what a imported meanwhile" \
  repos_equal alice/second "$TMP/a" "$TMP/b"
grep -q 'trying 2 remembered peers from' "$TMP/b.log" || fail "b did not say it tried its 2 remembered peers"
export_check b alice/second "$TMP/src2"
node_stop a
node_stop b
echo "ok"

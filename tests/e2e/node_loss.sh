#!/usr/bin/env bash
# 30% of datagrams are dropped (nftables numgen rule on input inside the
# namespace: announces, LEAVEs, unicast and multicast alike); three nodes
# still find each other and converge on two repositories written on
# different nodes. Skipped (77) when nftables can't be used here.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

command -v nft >/dev/null || { echo "nft not installed: skipped" >&2; exit 77; }
if ! nft add table inet gutsloss 2>/dev/null ||
   ! nft add chain inet gutsloss in '{ type filter hook input priority 0; }' 2>/dev/null ||
   ! nft add rule inet gutsloss in meta l4proto udp numgen random mod 100 '<' 30 counter drop 2>/dev/null; then
  echo "nftables unusable in this namespace: skipped" >&2
  exit 77
fi

src1="$TMP/src1"; src2="$TMP/src2"
make_repo "$src1" 4
make_repo "$src2" 3
node_start a
node_start b
node_start c
expect 0 "$GUTS" --data "$TMP/a" import alice/one "$src1"
expect 0 "$GUTS" --data "$TMP/c" import carol/two "$src2"
wait_until 90 "alice/one everywhere despite loss" repos_equal alice/one "$TMP/a" "$TMP/b" "$TMP/c"
wait_until 90 "carol/two everywhere despite loss" repos_equal carol/two "$TMP/a" "$TMP/b" "$TMP/c"
# A second round once everyone has met: updates on two nodes at once.
add_commit "$src1" "round two on a"
add_commit "$src2" "round two on c"
expect 0 "$GUTS" --data "$TMP/a" import alice/one "$src1"
expect 0 "$GUTS" --data "$TMP/c" import carol/two "$src2"
wait_until 90 "round two of alice/one everywhere" repos_equal alice/one "$TMP/a" "$TMP/b" "$TMP/c"
wait_until 90 "round two of carol/two everywhere" repos_equal carol/two "$TMP/a" "$TMP/b" "$TMP/c"
export_check b alice/one "$src1"
export_check b carol/two "$src2"

drops() { nft list chain inet gutsloss in | sed -n 's/.*counter packets \([0-9]*\).*/\1/p'; }
drops_at_least() { [ "$(drops)" -ge "$1" ]; }
# The nodes keep announcing under loss: the rule must really have bitten.
wait_until 30 "the loss rule drops at least 10 datagrams" drops_at_least 10
echo "datagrams dropped by nftables: $(drops)"
for n in a b c; do node_stop $n; done
echo "ok"

#!/usr/bin/env bash
# A first copy pulled from three seeds at once, one killed midway (issue
# 16, target 5). Each seed s1..s3 sits in a namespace of its own behind a
# veth leg with its upload capped (tc, 2mbit), and holds the same
# repository (1,801 objects, about 3 MB, imported once and copied); a
# fresh node f beside them (every interface) splits its pull between them
# (docs/architecture.md, "A pull split between peers"). Once f pulls from two seeds, one of them is
# killed by pid: its part goes back to the plan and another seed brings
# it. f ends with exactly the seeds' objects and refs, its export passes
# `git fsck --strict` and equals the source, and status.json counts the
# split, the joins and the part given back.
set -euo pipefail
NETNS_MOUNT=1
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v tc >/dev/null || { echo "no tc: skipped" >&2; exit 77; }
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 0 ] || echo 0 >/proc/sys/net/ipv4/ip_forward

KEY=multi/repo
three_seeds "$KEY" 2mbit
seed_pulled_from
victim=$VICTIM n=$NPULL
node_kill9 "s$victim"
echo "killed s$victim while f pulled from $n seeds"

live=1; [ "$victim" = 1 ] && live=2
wait_until 120 "f holds the seeds' copy" repos_equal "$KEY" "$TMP/s$live" "$TMP/f"
wait_until 10 "f's status counts the part given back" counter_at_least f split_given_back 1
for c in split_pulls split_joins objects_dup objects_fetched; do
  echo "f: $c $(node_counter f "$c")"
done
[ "$(node_counter f split_pulls)" -eq 1 ] || fail "f split $(node_counter f split_pulls) pulls, not 1"
counter_at_least f split_joins 1 || fail "no seed joined f's pull"
export_check f "$KEY" "$TMP/src.git"
for i in 1 2 3; do [ "$i" = "$victim" ] || node_stop "s$i"; done
node_stop f
echo "ok"

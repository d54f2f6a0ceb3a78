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
gen_repo "$TMP/src.git" 100 15 2048
# one import, copied: the seeds hold the same ref records
expect 0 "$GUTS" --data "$TMP/s1" import "$KEY" "$TMP/src.git"
for i in 1 2 3; do
  seed_leg "$i" "guts-e2e-$$-s$i" 2mbit
  [ "$i" = 1 ] || { mkdir -p "$TMP/s$i" && cp -a "$TMP/s1/repos" "$TMP/s$i/"; }
done
for i in 1 2 3; do node_start_ns "guts-e2e-$$-s$i" v0 "s$i"; done
for i in 1 2 3; do wait_until 20 "s$i writes its status" test -s "$TMP/s$i/node/status.json"; done
NODE_IFACE= node_start f

# connected I: f holds a connection to seed I
connected() { [ -n "$(ss -Htn state established dst "10.74.$1.2")" ]; }
victim=
deadline=$((SECONDS + 60))
while [ -z "$victim" ]; do
  node_alive f
  [ $SECONDS -lt $deadline ] || fail "f did not pull from two seeds within 60 s"
  n=0 last=
  for i in 1 2 3; do if connected "$i"; then n=$((n + 1)); last=$i; fi; done
  [ "$n" -ge 2 ] && victim=$last
  sleep 0.05
done
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

#!/usr/bin/env bash
# A first copy pulled from three seeds at once, one stopped (SIGSTOP)
# midway (issue 16, target 5): unlike a killed seed, a stopped one keeps
# its connections open and says nothing. Seeds s1..s3 each sit in a
# namespace of their own behind a veth leg with their upload capped (tc,
# 2mbit) and hold the same repository (1,801 objects, about 3 MB); a fresh
# node f beside them splits its pull between them. Once f pulls from two
# seeds, one is stopped by pid: after CORE_SPLIT_STALL_MS without a frame
# its session is stalled, or failure detection declares the seed dead
# first (about as soon, with the test's 200 ms interval: which one wins is
# the machine's timing, and test_core_multipeer counts stalls exactly);
# either way its parts go back to the plan and the other seeds bring them.
# f ends with the seeds' copy (export passes `git fsck --strict` and equals
# the source), counts the parts given back and logs why; the seed is then
# continued and stops cleanly. Bounded: 60 s to see two
# seeds, 120 s for the copy.
set -euo pipefail
NETNS_MOUNT=1
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v tc >/dev/null || { echo "no tc: skipped" >&2; exit 77; }
[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 0 ] || echo 0 >/proc/sys/net/ipv4/ip_forward
# a stopped seed is continued before the usual cleanup (which stops by pid)
stopped=
trap 'rc=$?; set +e; [ -z "$stopped" ] || kill -CONT "$stopped" 2>/dev/null; (exit $rc); netns_cleanup' EXIT

KEY=multi/repo
three_seeds "$KEY" 2mbit
seed_pulled_from
victim=$VICTIM n=$NPULL
stopped=${NODE_PID[s$victim]}
kill -STOP "$stopped"
echo "stopped s$victim (pid $stopped) while f pulled from $n seeds"

live=1; [ "$victim" = 1 ] && live=2
wait_until 120 "f holds the seeds' copy" repos_equal "$KEY" "$TMP/s$live" "$TMP/f"
wait_until 10 "f's status counts the parts given back" counter_at_least f split_given_back 1
grep -Eq "failed: .*(stalled|peer gone)" "$TMP/f.log" ||
  fail "f's log names no stalled or gone seed"
for c in split_pulls split_joins split_stalls split_given_back objects_dup objects_fetched; do
  echo "f: $c $(node_counter f "$c")"
done
[ "$(node_counter f split_pulls)" -eq 1 ] || fail "f split $(node_counter f split_pulls) pulls, not 1"
export_check f "$KEY" "$TMP/src.git"
kill -CONT "$stopped"
stopped=
for i in 1 2 3; do node_stop "s$i"; done
node_stop f
echo "ok"

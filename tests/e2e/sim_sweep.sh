#!/usr/bin/env bash
# Seed sweep: 50 small clusters with every fault on (loss, duplication,
# jitter, a partition, crashes and restarts, multicast domains joined by
# gateways, a bandwidth cap, concurrent writers, a join and a leave) must
# each converge with no invariant violated. A failure prints the command
# that replays it. Three more seeds run over real LMDB envs.
set -euo pipefail
. "$(dirname "$0")/sim_lib.bash"

cat >"$TMP/faults.scn" <<'SCN'
# a late joiner, a leaver, a three-way partition (unlisted nodes are in the
# first group) and a loss burst
absent 3
at 4s join 3
at 9s leave 5
at 16s partition 0,1 | 4-6 | 7
at 24s heal
at 12s loss 0.4
at 18s loss 0.1
SCN

failed=0
run() {
  local out rc=0
  out=$("$SIM" "$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "$out" >&2
    failed=$((failed + 1))
  fi
}

for seed in $(seq 1 50); do
  nodes=$((8 + seed % 13))
  domains=$((1 + seed % 3))
  run --nodes "$nodes" --seed "$seed" --loss 0.1 --dup 0.05 --latency 1ms..20ms \
      --repos 2 --objects 60 --writers 3 --partition 30s-40s --crash-rate 0.02 \
      --domains "$domains" --bandwidth 1M --duration 90s --faults-until 45s \
      --scenario "$TMP/faults.scn"
done
for seed in 101 102 103; do
  run --nodes 5 --seed "$seed" --loss 0.1 --dup 0.05 --latency 1ms..10ms --repos 2 \
      --objects 30 --writers 2 --partition 10s-15s --crash-rate 0.02 --duration 40s --lmdb
done
[ -z "$(ls "$TMP" | grep '^guts-sim-' || true)" ] || fail "--lmdb left its temp dir behind"
[ "$failed" -eq 0 ] || fail "$failed runs failed"
echo ok

#!/usr/bin/env bash
# Corruption: with one datagram copy or frame in 100 carrying a flipped byte
# (beyond what a checksum catches), 10 seeds must converge with no bad
# object stored and no ref over an incomplete closure, and the cores must
# have seen the damage (malformed messages, objects rejected by their hash).
#
# A ref record whose target was corrupted can never complete its closure;
# the core keeps pending records per (name, record), so it cannot shadow the
# valid record of that name, and drops it after bounded tries (seed 4 used
# to leave node 7 pulling 1 ref every ~15 ms forever).
set -euo pipefail
. "$(dirname "$0")/sim_lib.bash"

bad=0 malformed=0
for seed in $(seq 1 10); do
  args=(--nodes 10 --seed "$seed" --corrupt 0.01 --loss 0.1 --dup 0.02 --repos 2 --objects 60
        --writers 3 --crash-rate 0.01 --duration 60s)
  rc=0
  "$SIM" "${args[@]}" --json >"$TMP/out" 2>"$TMP/err" || rc=$?
  read -r ok viol b m < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["corrupted"] > 0
print(int(d["ok"]), d["violations"]["total"], d["cores"]["bad_objects"],
      d["cores"]["dgrams_malformed"] + d["cores"]["frames_malformed"])
' "$TMP/out") || fail "seed $seed: bad report: $(cat "$TMP/out" "$TMP/err")"
  bad=$((bad + b)) malformed=$((malformed + m))
  [ "$viol" -eq 0 ] || fail "seed $seed: invariant violated: $(cat "$TMP/out")"
  if [ "$ok" -ne 1 ] || [ "$rc" -ne 0 ]; then
    "$SIM" "${args[@]}" >"$TMP/human" 2>&1 || true
    fail "seed $seed: not converged: $(cat "$TMP/human")"
  fi
done
[ "$bad" -gt 0 ] || fail "no corrupted object ever reached a core's hash check"
[ "$malformed" -gt 0 ] || fail "no corrupted message ever failed decoding"
echo "ok ($bad objects rejected, $malformed messages malformed)"

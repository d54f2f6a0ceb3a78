#!/usr/bin/env bash
# Same options and seed, same bytes: two runs with every fault on print
# identical reports once the wall-clock line is dropped (JSON and summary);
# another seed prints a different one.
set -euo pipefail
. "$(dirname "$0")/sim_lib.bash"

args=(--nodes 16 --seed 9 --loss 0.2 --dup 0.05 --latency 1ms..20ms --repos 2 --objects 60
      --writers 3 --partition 10s-20s --crash-rate 0.02 --domains 2 --bandwidth 500k
      --duration 60s)
for mode in --json --verbose; do
  "$SIM" "${args[@]}" "$mode" >"$TMP/a" 2>"$TMP/a.err"
  "$SIM" "${args[@]}" "$mode" >"$TMP/b" 2>"$TMP/b.err"
  [ "$(wc -l <"$TMP/a")" -gt 5 ] || fail "short report"
  grep -qE '^(  "wall": |wall: )' "$TMP/a" || fail "no wall line to strip"
  diff <(strip_wall "$TMP/a") <(strip_wall "$TMP/b") || fail "two runs differ ($mode)"
  # --verbose logs every core's lines with virtual times: identical too
  diff "$TMP/a.err" "$TMP/b.err" >/dev/null || fail "logs differ ($mode)"
done
"$SIM" "${args[@]/#9/10}" --json >"$TMP/c" || true
if diff -q <(strip_wall "$TMP/a") <(strip_wall "$TMP/c") >/dev/null; then
  fail "seed does not matter"
fi
echo ok

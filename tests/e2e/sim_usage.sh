#!/usr/bin/env bash
# guts-sim's command-line contract: a usage error is one line on stderr and
# exit 2, for flags and for scenario files (naming file and line); --help
# exits 0.
set -euo pipefail
. "$(dirname "$0")/sim_lib.bash"

one_line() { [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "want one line: $(cat "$TMP/err")"; }

for args in "--bogus" "--nodes" "--nodes 0" "--nodes x" "--nodes 10x" "--nodes 200001" \
            "--seed -1" "--loss 1.5" "--loss 1" "--dup -0.1" "--latency 5" \
            "--latency 20ms..1ms" "--latency 1ms.." "--partition 60s-30s" "--partition 30s" \
            "--crash-rate 2" "--duration 300" "--duration 0s" "--duration 5h" \
            "--repos 1001" "--json=yes" "--nodes=5 --domains 6" "--repos 0 --writers 1" \
            "--duration 10s --partition 5s-20s" "--lmdb --nodes 201" "--scenario /no/such" \
            "--bandwidth 0" "--interval 0s" "extra" "--peers 64" "--peers x" "--peers" \
            "--no-multicast --peers 0" "--no-multicast=yes" "--star" "--segments 0" \
            "--segments 2 --domains 2" "--nodes 3 --segments 4"; do
  # shellcheck disable=SC2086
  expect 2 "$SIM" $args
  one_line
  grep -q '^guts-sim: ' "$TMP/err" || fail "no prefix: $(cat "$TMP/err")"
done

scn="$TMP/bad.scn"
for line in "at 5s explode 3" "at 5s crash 99" "at 5 crash 1" "at 5s partition 0-3" \
            "at 5s write repo7 node 1" "at 5s loss 2" "end" "absent" "frobnicate" \
            "at 5s crash-held 0" "at 5s crash-held 11" "at 5s crash-held"; do
  printf '# a comment\n\n%s\n' "$line" >"$scn"
  expect 2 "$SIM" --nodes 10 --scenario "$scn"
  one_line
  grep -qF "$scn:3:" "$TMP/err" || fail "line not named for '$line': $(cat "$TMP/err")"
done

expect 0 "$SIM" --help
grep -q '^usage: guts-sim' "$TMP/out" || fail "--help"
# durations take ms, s or m, and --flag=value works like --flag value
expect 0 "$SIM" --nodes=3 --duration 1m --latency 2ms --ramp 500ms --write-every 2s
# the canonical command spells out the unicast topology, defaults included
expect 0 "$SIM" --nodes 4 --duration 10s --no-multicast --star --segments 2 --json
grep -q -- '--segments 2 --no-multicast --peers 1 --star ' "$TMP/out" || fail "replay: $(head -2 "$TMP/out")"
echo ok

#!/usr/bin/env bash
# The checker can fail: with --broken-merge (the ref merge lets the incoming
# record win, so the result depends on delivery order) a run with
# concurrent writers must exit 1, report ref records going backwards, and
# print a replay command that reproduces the same report.
set -euo pipefail
. "$(dirname "$0")/sim_lib.bash"

args=(--nodes 12 --seed 4 --loss 0.1 --dup 0.02 --latency 1ms..20ms --repos 2 --objects 30
      --writers 4 --duration 40s)
expect 0 "$SIM" "${args[@]}"
grep -q '^violations: none$' "$TMP/out" || fail "the correct merge reported violations"

expect 1 "$SIM" "${args[@]}" --broken-merge
grep -q '^violations: [1-9][0-9]* (.*ref backwards [1-9]' "$TMP/out" ||
  fail "broken merge not caught: $(cat "$TMP/out")"
grep -q 'went backwards' "$TMP/out" || fail "violation not described"
replay=$(sed -n 's/^FAILED; replay: //p' "$TMP/out")
[ -n "$replay" ] || fail "no replay command"
strip_wall "$TMP/out" >"$TMP/first"

# the replay command, run as printed, gives the same report
read -r -a cmd <<<"$replay"
[ "${cmd[0]}" = guts-sim ] || fail "replay does not start with guts-sim: $replay"
expect 1 "$SIM" "${cmd[@]:1}"
strip_wall "$TMP/out" | diff "$TMP/first" - || fail "replay differs"

# JSON: ok false, the counter and the first lines, and the replay on stderr
expect 1 "$SIM" "${args[@]}" --broken-merge --json
python3 - "$TMP/out" <<'PY' || fail "JSON report of the broken run"
import json, sys
d = json.load(open(sys.argv[1]))
v = d["violations"]
assert d["ok"] is False and v["ref_backwards"] > 0 and v["total"] >= v["ref_backwards"]
assert any("went backwards" in l for l in v["first"])
assert d["command"].startswith("guts-sim ") and "--broken-merge" in d["command"]
PY
grep -q '^guts-sim: FAILED; replay: guts-sim .*--broken-merge' "$TMP/err" ||
  fail "no replay line on stderr"
echo ok

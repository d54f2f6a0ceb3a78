#!/usr/bin/env bash
# Two segments (issue 14): group datagrams reach only a node's own segment
# (nodes 0, 2, 4, ... and 1, 3, 5, ...), unicast crosses, and one node of
# the second segment (node 1) knows one address of the first (node 0).
# Repository 0 starts at node 0 and repository 1 at node 1, and writers sit
# in both: every node ends with everything, both ways, including the nodes
# that know nobody. Without node 1 nothing crosses (the control).
set -euo pipefail
. "$(dirname "$0")/sim_lib.bash"

args=(--nodes 200 --seed 2 --loss 0.1 --repos 2 --objects 30 --writers 4 --duration 60s
      --faults-until 20s --segments 2)
expect 0 "$SIM" "${args[@]}" --until-converged --json
python3 - "$TMP/out" <<'PY' || fail "$(grep -E 'convergence|"converged"|largest' "$TMP/out")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] and d["converged"] and d["live_nodes"] == 200, "not converged"
assert d["multicast"] is True and d["segments"] == 2 and d["peers"] == 0, "topology"
assert d["faults"]["writes"] > 0, "no writes"
# more than the two bridge nodes talk across: the others learned addresses
# from their PEERS
assert d["cores"]["pex_in"] > 0 and d["cores"]["peers_unicast"] > 2, d["cores"]
PY

# the control: node 1 (the only address across) never starts; the first
# segment keeps repository 0 to itself, the second gets nothing
printf 'absent 1\n' >"$TMP/nobridge.scn"
expect 1 "$SIM" "${args[@]}" --writers 0 --scenario "$TMP/nobridge.scn" --json
python3 - "$TMP/out" <<'PY' || fail "the segments were not separate"
import json, sys
d = json.load(open(sys.argv[1]))
assert not d["converged"] and d["final_states"] == 2 and d["largest_agreeing"] == 100, d
# PROBEs and ACKs are unicast within a segment: no announce copy crossed
assert d["cores"]["pex_in"] == 0 and d["cores"]["dgrams_unicast"] == 0, d["cores"]
PY
echo ok

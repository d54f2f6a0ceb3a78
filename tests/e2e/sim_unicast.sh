#!/usr/bin/env bash
# Unicast only (issue 14): with multicast off and each node started with
# one --peer (a node already running), 200 nodes converge through the
# core's own reach code: seeds, symmetric unicast answers, PEERS and
# learned peers. A commit at one node of the settled cluster reaches all of
# them within 3 virtual seconds (the multicast target of sim_spread.sh),
# and a 100-node run with loss, crashes and writers converges after its
# faults. A star (--star: every node names node 0, a hub that hears them
# all) converges within 15 virtual seconds of a cold start and spreads an
# update within 3: the hub answers a spoke that lacks what it holds at once
# and introduces spokes to each other (node_reach.c, "Prompt answers");
# before, 300 spokes took 45 s, waiting for the hub's regular announces.
set -euo pipefail
. "$(dirname "$0")/sim_lib.bash"

check() { # REPORT MAX_MS: converged, clean, unicast only, peer exchange used
  python3 - "$1" "$2" <<'PY' || fail "$(grep -E '"command"|convergence|"converged"|largest' "$1")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] and d["converged"], "not converged"
assert d["multicast"] is False and d["peers"] == 1, "not a unicast-only run"
assert d["per_node_per_s"]["multicast_msgs"] == 0, "a group datagram was sent"
assert d["live_nodes"] == d["nodes"] - d["faults"]["leaves"], d["live_nodes"]
c = d["cores"]
# nodes met beyond their one seed: by PEERS, then as unicast peers
assert c["pex_in"] > 0 and c["peers_unicast"] >= 2 * d["nodes"], c
assert d["convergence_ms"]["max"] <= int(sys.argv[2]), d["convergence_ms"]
PY
}

printf 'at 30s write repo0 node 100\nend 45s\n' >"$TMP/update.scn"
expect 0 "$SIM" --nodes 200 --seed 3 --repos 1 --objects 30 --writers 0 --no-multicast \
  --peers 1 --scenario "$TMP/update.scn" --until-converged --json
check "$TMP/out" 3000
grep -q '"quiet_ms": 30000' "$TMP/out" || fail "the update did not come last"

expect 0 "$SIM" --nodes 300 --seed 2 --repos 1 --objects 30 --writers 0 --no-multicast \
  --peers 1 --star --duration 60s --until-converged --json
check "$TMP/out" 15000
printf 'at 20s write repo0 node 150\nend 35s\n' >"$TMP/update.scn"
expect 0 "$SIM" --nodes 300 --seed 2 --repos 1 --objects 30 --writers 0 --no-multicast \
  --peers 1 --star --scenario "$TMP/update.scn" --until-converged --json
check "$TMP/out" 3000
grep -q '"quiet_ms": 20000' "$TMP/out" || fail "the star's update did not come last"

# every fault the engine has, with multicast off: a restarted node has only
# its seed (remembered peers are the daemon's, not the core's)
expect 0 "$SIM" --nodes 100 --seed 5 --loss 0.1 --dup 0.01 --latency 1ms..20ms --repos 2 \
  --objects 60 --writers 2 --crash-rate 0.005 --duration 90s --faults-until 40s \
  --no-multicast --until-converged --json
check "$TMP/out" 30000
echo ok

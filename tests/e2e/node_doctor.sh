#!/usr/bin/env bash
# guts doctor names what keeps nodes apart, one line per check, exit 1 when
# a check fails: a key mismatch (a and b hold different cluster keys),
# multicast blocked by the firewall while unicast works (the multicast
# check fails and hints --peer), no multicast route at all (not needed),
# and no interface that can carry multicast.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

# check_is NAME CHECK STATUS [PATTERN]: doctor --json on NAME's data dir has
# CHECK with STATUS (and PATTERN in its detail or hint).
check_is() {
  "$GUTS" --data "$TMP/$1" doctor --json >"$TMP/doc.json" 2>/dev/null || true
  /usr/bin/python3 -c '
import json, re, sys
c = [x for x in json.load(open(sys.argv[1])) if x["check"] == sys.argv[2]]
ok = c and c[0]["status"] == sys.argv[3] and (len(sys.argv) < 5 or
    re.search(sys.argv[4], c[0]["detail"] + " " + (c[0]["hint"] or "")))
sys.exit(0 if ok else 1)' "$TMP/doc.json" "${@:2}"
}

# Everything fine: a and b hear each other by multicast.
node_start a --listen 127.0.0.1:7201
node_start b --listen 127.0.0.1:7202
wait_until 30 "a and b meet" peers_at_least a 1
expect 0 "$GUTS" --data "$TMP/a" doctor
grep -Eq '^peers by multicast +ok ' "$TMP/out" || fail "doctor: $(cat "$TMP/out")"
grep -Eq '^multicast loopback +ok ' "$TMP/out" || fail "doctor: $(cat "$TMP/out")"
grep -Eq '^node interfaces +ok +joined on lo \(IPv4\)' "$TMP/out" || fail "doctor: $(cat "$TMP/out")"
node_stop a
node_stop b

# Key mismatch.
expect 0 "$GUTS" keygen "$TMP/k1"
expect 0 "$GUTS" keygen "$TMP/k2"
node_start c --listen 127.0.0.1:7203 --key-file "$TMP/k1"
node_start d --listen 127.0.0.1:7204 --key-file "$TMP/k2"
wait_until 30 "doctor on c names d's key" check_is c "cluster key" fail '127\.0\.0\.1:7204: key mismatch.*--key-file'
expect 1 "$GUTS" --data "$TMP/c" doctor
grep -Eq '^cluster key +fail +datagrams refused from 127\.0\.0\.1:7204: key mismatch' "$TMP/out" ||
  fail "doctor text: $(cat "$TMP/out")"
node_stop c
node_stop d

# Multicast dropped by the firewall, unicast working (f --peer e).
block_multicast || { echo "no nft, or it refused the ruleset: skipped" >&2; exit 77; }
node_start e --listen 127.0.0.1:7205
node_start f --listen 127.0.0.1:7206 --peer 127.0.0.1:7205
wait_until 30 "doctor on e: multicast fails while unicast works, hint --peer" \
  check_is e "peers by multicast" fail 'while 1 peer is heard by unicast.*--peer HOST:PORT'
check_is e "multicast loopback" fail || fail "loopback check passed through the firewall"
expect 1 "$GUTS" --data "$TMP/e" doctor
node_stop e
node_stop f
nft delete table inet nomcast

# No multicast route at all: guts-node needs none (it names the interface),
# so the route check only says so and the loopback probe still works.
ip route del 224.0.0.0/4 dev lo
check_is e "multicast route" ok 'no route for 239\.255\.71\.71.*none needed' || fail "route check: $(cat "$TMP/doc.json")"
check_is e "multicast loopback" ok 'on lo came back' || fail "loopback check: $(cat "$TMP/doc.json")"
# No interface able to carry multicast: the interfaces and loopback checks fail.
ip link set lo multicast off
check_is e "interfaces" fail 'no interface is up with the MULTICAST flag' || fail "interfaces: $(cat "$TMP/doc.json")"
check_is e "multicast loopback" fail || fail "loopback check passed without an interface"
echo "ok"

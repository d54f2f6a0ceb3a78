#!/usr/bin/env bash
# A keyed cluster (guts-node --key-file, in a private network namespace):
# a and b share a key and replicate a repository; c holds another key and d
# none. c and d never become peers of a or b, store nothing of theirs, and
# what they send is refused and counted (status.json "seal" counters on the
# keyed nodes; on d, per source in "refused", before the decoder); a and b
# store nothing of c's or d's.
# A plain UDP socket joined to the group records every datagram: the
# keyed nodes' ones are sealed (first byte 0xc1) and carry no repository
# name or commit id in clear, while d's open announces do (which shows the
# capture sees names when they are there).
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

# st NAME EXPR: a Python assertion on node NAME's status.json (as d).
st() {
  /usr/bin/python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); sys.exit(0 if ('"$2"') else 1)' \
    "$TMP/$1/node/status.json" 2>/dev/null
}
has_repo() { "$GUTS" --data "$TMP/$1" ls --json 2>/dev/null | grep -q "\"$2\""; }

expect 0 "$GUTS" keygen "$TMP/k1"
expect 0 "$GUTS" keygen "$TMP/k2"

# The capture: every group datagram as one hex line, flushed as it comes.
/usr/bin/python3 - "$TMP/capture" <<'PY' &
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("239.255.71.71", 7171))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             struct.pack("4s4s", socket.inet_aton("239.255.71.71"), socket.inet_aton("127.0.0.1")))
with open(sys.argv[1], "w") as f:
    while True:
        data, src = s.recvfrom(2048)
        f.write("%s %s\n" % (src[1], data.hex()))
        f.flush()
PY
EXTRA_PIDS+=($!)
wait_until 10 "capture socket bound" test -e "$TMP/capture"

src="$TMP/src"
make_repo "$src" 4
key=secretowner/classified-plans
expect 0 "$GUTS" --data "$TMP/a" import "$key" "$src"
expect 0 "$GUTS" --data "$TMP/c" import other/cluster-two "$src"
expect 0 "$GUTS" --data "$TMP/d" import open/plainrepo "$src"

node_start a --key-file "$TMP/k1"
node_start b --key-file "$TMP/k1"
node_start c --key-file "$TMP/k2"
node_start d

wait_until 60 "$key replicated from a to b" repos_equal "$key" "$TMP/a" "$TMP/b"
export_check b "$key" "$src"

# Everyone has heard everyone else several times over: the refusals are
# counted on both sides.
wait_until 30 "a refuses c (key mismatch) and d (unsealed)" \
  st a 'd["seal"]["rejected_key_mismatch"] >= 10 and d["seal"]["rejected_unsealed"] >= 10'
wait_until 30 "c refuses a and b (key mismatch) and d (unsealed)" \
  st c 'd["seal"]["rejected_key_mismatch"] >= 20 and d["seal"]["rejected_unsealed"] >= 10'
wait_until 30 "d refuses sealed datagrams, per source" \
  st d 'sum(x["count"] for x in d["refused"] if x["reason"] == "sealed, this node is open") >= 30 and len(d["refused"]) >= 3 and d["counters"]["dgrams_malformed"] == 0'

st a 'd["seal"]["keyed"] and len(d["seal"]["key_id"]) == 8 and d["seal"]["streams_ready"] >= 1' ||
  fail "a: seal status: $(cat "$TMP/a/node/status.json")"
st b 'd["seal"]["key_id"] == json.load(open(sys.argv[1].replace("/b/", "/a/")))["seal"]["key_id"]' ||
  fail "a and b show different key ids"
st d 'd["seal"] == {"keyed": False}' || fail "d: seal status: $(cat "$TMP/d/node/status.json")"
for n in a b c; do
  st "$n" 'd["seal"]["rejected_forged"] == 0 and d["seal"]["rejected_replay"] == 0 and d["seal"]["rejected_stale"] == 0' ||
    fail "$n: unexpected refusals: $(cat "$TMP/$n/node/status.json")"
done

# Peers: a and b see only each other; c and d see nobody.
st a 'len(d["peers"]) == 1' || fail "a's peers: $(cat "$TMP/a/node/status.json")"
st b 'len(d["peers"]) == 1' || fail "b's peers: $(cat "$TMP/b/node/status.json")"
st c 'len(d["peers"]) == 0' || fail "c has peers: $(cat "$TMP/c/node/status.json")"
st d 'len(d["peers"]) == 0' || fail "d has peers: $(cat "$TMP/d/node/status.json")"

# Nothing crossed: not the keyed cluster's repository to c or d, not c's or
# d's to a or b (each has announced it dozens of times by now).
for n in c d; do
  ! has_repo "$n" "$key" || fail "$n stored $key"
  [ ! -e "$TMP/$n/repos/secretowner" ] || fail "$n has a directory for secretowner"
done
for n in a b; do
  ! has_repo "$n" other/cluster-two || fail "$n stored c's repository"
  ! has_repo "$n" open/plainrepo || fail "$n stored d's repository"
done
grep -q "running open" "$TMP/d.log" || fail "d did not say it runs open"
grep -q "running open" "$TMP/a.log" && fail "a says it runs open"
grep -q "keyed: cluster key" "$TMP/a.log" || fail "a did not log its key id"

# A stream that starts with a plain frame instead of a seal hello: a closes
# the connection, counts it and stays up. Whether a's own hello (queued at
# accept) reaches us before the close depends on scheduling, so we accept
# either nothing or exactly that hello; never anything else.
before=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seal"]["rejected_unsealed"])' "$TMP/a/node/status.json")
/usr/bin/python3 - "$TMP/a/node/status.json" <<'PY' || fail "plain stream to a"
import json, socket, sys
host, port = json.load(open(sys.argv[1]))["listen"].rsplit(":", 1)
c = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
c.sendall(bytes([0, 0, 0, 6, 0x95, 1, 2, 3, 4, 5]))
got = b""
while True:
    try:
        b = c.recv(4096)
    except ConnectionResetError:
        break
    if not b:
        break
    got += b
assert got == b"" or (len(got) == 34 and got[:6] == bytes([0, 0, 0, 30, 0xC1, 1])), got.hex()
PY
wait_until 10 "a counts the plain stream" st a "d['seal']['rejected_unsealed'] > $before and d['counters']['frames_malformed'] == 0"
grep -Eq "stream from 127\.0\.0\.1:[0-9]+ refused: not sealed" "$TMP/a.log" || fail "a did not log the plain stream"
node_alive a

# guts status shows the key id and the refusals, or that a node runs open.
expect 0 "$GUTS" --data "$TMP/a" status
grep -Eq "^keyed: cluster key [0-9a-f]{8}; refused [0-9]+ key mismatch, [0-9]+ not sealed" "$TMP/out" ||
  fail "guts status of a: $(cat "$TMP/out")"
expect 0 "$GUTS" --data "$TMP/d" status
grep -q "^running open" "$TMP/out" || fail "guts status of d: $(cat "$TMP/out")"
expect 0 "$GUTS" --data "$TMP/c" status --json
/usr/bin/python3 -c 'import json,sys; s = json.load(open(sys.argv[1]))["daemon"]["seal"]; assert s["keyed"] and s["rejected_key_mismatch"] > 0, s' "$TMP/out" ||
  fail "guts status --json of c: $(cat "$TMP/out")"

# The capture: sealed datagrams from the keyed nodes, no name or id in clear.
node_stop a
node_stop b
node_stop c
node_stop d
/usr/bin/python3 - "$TMP/capture" "$key" "$(git -C "$src" rev-parse HEAD)" <<'PY' || fail "capture check"
import sys
cap, key, head = sys.argv[1], sys.argv[2].encode(), bytes.fromhex(sys.argv[3])
sealed = plain = 0
names_in_plain = 0
for line in open(cap):
    port, hx = line.split()
    d = bytes.fromhex(hx)
    if d[0] == 0xC1:
        sealed += 1
        for needle in (key, b"secretowner", b"classified", b"cluster-two", head):
            assert needle not in d, "in clear in a sealed datagram: %r" % needle
    else:
        plain += 1
        assert key not in d and b"classified" not in d, "keyed repository name sent unsealed"
        names_in_plain += b"open/plainrepo" in d
assert sealed >= 30, "only %d sealed datagrams captured" % sealed
assert names_in_plain >= 5, "d's open announces not seen in the capture (%d plain)" % plain
print("captured %d sealed, %d plain datagrams" % (sealed, plain))
PY
echo "ok"

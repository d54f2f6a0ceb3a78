#!/usr/bin/env bash
# Key rotation without downtime: three keyed nodes move from key 1 to key 2
# in the three documented steps (add key 2 as a second line everywhere;
# make it first everywhere; drop key 1), each followed by `guts keys reload`
# (SIGHUP) on every node, never a restart. After each step a repository
# imported on one node reaches the others. `guts keys list` shows the ring
# and the key each peer seals with; a fourth node left on key 1 alone is
# refused and named by the others as a key mismatch, and stores nothing.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

id_of() { sed -n 's/.*(key id \([0-9a-f]*\)).*/\1/p' "$TMP/out"; }
expect 0 "$GUTS" keygen "$TMP/k1"
k1id=$(id_of)
expect 0 "$GUTS" keygen "$TMP/k2"
k2id=$(id_of)
[ -n "$k1id" ] && [ -n "$k2id" ] && [ "$k1id" != "$k2id" ] || fail "key ids: $k1id $k2id"
[ "$(wc -c <"$TMP/k1")" -eq 65 ] || fail "keygen writes one line of 64 hex digits"

# keyfile NAME LINES...: node NAME's key file holds these keys, in order.
keyfile() {
  local f="$TMP/$1.key"; shift
  : >"$f.new"; chmod 600 "$f.new"
  for k in "$@"; do cat "$TMP/$k" >>"$f.new"; done
  mv "$f.new" "$f"
}
reload_all() {
  for n in a b c; do
    expect 0 "$GUTS" --data "$TMP/$n" keys reload
    grep -q "seals with $1" "$TMP/out" || fail "$n after reload: $(cat "$TMP/out")"
  done
}
# peers_on NAME KEYID: every peer NAME hears seals with KEYID (and there are 2).
peers_on() {
  "$GUTS" --data "$TMP/$1" keys list --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
p = d["peers"]
sys.exit(0 if len(p) == 2 and all(x["key_id"] == sys.argv[1] for x in p) else 1)' "$2"
}
step_repo() { # step_repo NODE KEY: import a new repository on NODE; all three get it
  make_repo "$TMP/src-$2" 2
  expect 0 "$GUTS" --data "$TMP/$1" import "$2" "$TMP/src-$2"
  wait_until 60 "$2 on a, b and c" repos_equal "$2" "$TMP/a" "$TMP/b" "$TMP/c"
}

for n in a b c; do keyfile $n k1; done
for n in a b c; do node_start $n --key-file "$TMP/$n.key"; done
wait_until 30 "a hears b and c on key 1" peers_on a "$k1id"
step_repo a alice/one

# A fourth node left on key 1 alone, started now and kept to the end.
keyfile d k1

# Step 1: key 2 second everywhere.
for n in a b c; do keyfile $n k1 k2; done
reload_all "$k1id"
expect 0 "$GUTS" --data "$TMP/b" keys list
grep -q "seals with $k1id; also opens $k2id" "$TMP/out" || fail "list: $(cat "$TMP/out")"
step_repo b alice/two

# Step 2: key 2 first, one node at a time (the others still seal with key 1).
keyfile a k2 k1
expect 0 "$GUTS" --data "$TMP/a" keys reload
grep -q "seals with $k2id; also opens $k1id" "$TMP/out" || fail "a: $(cat "$TMP/out")"
step_repo a alice/three
keyfile b k2 k1
keyfile c k2 k1
reload_all "$k2id"
wait_until 30 "c hears a and b on key 2" peers_on c "$k2id"
step_repo c alice/four

# Step 3: key 1 gone; d still holds only key 1.
node_start d --key-file "$TMP/d.key"
for n in a b c; do keyfile $n k2; done
reload_all "$k2id"
step_repo b alice/five
refused_by() {
  "$GUTS" --data "$TMP/$1" keys list --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(r["reason"] == "key mismatch" for r in d["refused"]) else 1)'
}
wait_until 30 "a names d as a key mismatch" refused_by a
expect 0 "$GUTS" --data "$TMP/a" keys list
grep -q "^refused .*key mismatch.*none of this node's keys" "$TMP/out" || fail "list: $(cat "$TMP/out")"
grep -q "key mismatch" "$TMP/a.log" || fail "a logged no key mismatch"
[ -z "$("$GUTS" --data "$TMP/d" ls --json 2>/dev/null | grep alice || true)" ] \
  || fail "d (old key alone) stored a repository"

# A key file that no longer reads keeps the keys in use, and says so.
printf 'not a key\n' >"$TMP/a.key"
expect 1 "$GUTS" --data "$TMP/a" keys reload
grep -q "line 1 is not a key.*the node kept its keys ($k2id)" "$TMP/err" \
  || fail "bad reload: $(cat "$TMP/err")"
grep -q "key file not reread: .*line 1 is not a key" "$TMP/a.log" || fail "a's log"
step_repo c alice/six

# An open node has no key to reload: said at once, no signal sent.
node_start e
wait_until 30 "e writes its status" peers_at_least e 0
expect 1 "$GUTS" --data "$TMP/e" keys reload
grep -q "runs open (no --key-file): nothing to reload" "$TMP/err" \
  || fail "open reload: $(cat "$TMP/err")"
grep -q "SIGHUP" "$TMP/e.log" && fail "the open node was signalled"
for n in a b c d e; do node_stop $n; done
echo "ok"

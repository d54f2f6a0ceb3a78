#!/usr/bin/env bash
# --max-object: b refuses an object larger than its limit with one log line,
# stores nothing of it, and still takes everything else. The repository's
# main branch is small; branch "big" adds a 300 KB blob (incompressible:
# it travels as one record in an OBJECTS frame) and a 1.5 MB one (as
# OBJECT_CHUNKs, over the 1 MiB chunk). b (--max-object 100000) gets every
# object but those two and the main branch, never the big branch, and says
# so once per object however often it pulls again. Bad values fail at start.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

for bad in 0 1023 1073741825 -5 12k ''; do
  expect 2 "$GUTS_NODE" --data "$TMP/x" --max-object "$bad"
  grep -q -- "--max-object" "$TMP/err" || fail "no --max-object in the error: $(cat "$TMP/err")"
done
expect 2 "$GUTS_NODE" --data "$TMP/x" --max-frame 1000
expect 2 "$GUTS_NODE" --data "$TMP/x" --max-sessions 0

make_repo "$TMP/src" 3
git -C "$TMP/src" checkout -q -b big
head -c 300000 /dev/urandom >"$TMP/src/mid.bin"
head -c 1500000 /dev/urandom >"$TMP/src/huge.bin"
git -C "$TMP/src" add -A
git -C "$TMP/src" commit -q -m "big blobs"
git -C "$TMP/src" checkout -q main
mid=$(git -C "$TMP/src" rev-parse big:mid.bin)
huge=$(git -C "$TMP/src" rev-parse big:huge.bin)
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/src"

objects_of() { repo_state "$1" alice/repo | cut -d' ' -f1; }
total=$(objects_of "$TMP/a")

node_start a
node_start b --max-object 100000
wait_until 30 "a and b see each other" peers_at_least b 1
b_has_all_but_two() { [ "$(objects_of "$TMP/b")" = $((total - 2)) ]; }
wait_until 60 "b has every object but the two big ones" b_has_all_but_two
main_on_b() { "$GUTS" --data "$TMP/b" refs alice/repo | grep -q "refs/heads/main"; }
wait_until 30 "main on b" main_on_b

# Several more pulls (anti-entropy: b still differs from a) say nothing new.
ended=$(sessions_ended b)
wait_until 60 "b ended two more pulls" counter_at_least b sessions_ended $((ended + 2))
for id in "$mid" "$huge"; do
  n=$(grep -c "object $id in alice/repo refused" "$TMP/b.log" || true)
  [ "$n" -eq 1 ] || fail "object $id refused $n times in the log, want 1"
done
[ "$(objects_of "$TMP/b")" = $((total - 2)) ] || fail "b's object count changed"
if "$GUTS" --data "$TMP/b" refs alice/repo | grep -q "refs/heads/big"; then
  fail "b applied the big branch without its blobs"
fi
expect 0 "$GUTS" --data "$TMP/b" log alice/repo refs/heads/main -n 1
node_stop a
node_stop b
echo "ok"

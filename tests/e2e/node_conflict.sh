#!/usr/bin/env bash
# Concurrent updates of the same ref on two nodes converge everywhere. a and
# b import different commits for refs/heads/main before they ever meet (each
# alone in the namespace); once both run, every node (c too) ends with the
# same refs: main is one of the two commits and the other is kept under
# refs/guts/conflicts/<writer>/<commit>/heads/main, never lost.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

base="$TMP/base"
make_repo "$base" 3
git clone -q --mirror "$base" "$TMP/srcA"
git clone -q --mirror "$base" "$TMP/srcB"
expect 0 "$GUTS" --data "$TMP/c" import alice/repo "$base"

# Diverge main: one new commit on each side.
for side in A B; do
  w="$TMP/work$side"
  git clone -q "$base" "$w"
  (cd "$w" && printf 'side %s\n' "$side" >side.txt && git add side.txt && git commit -q -m "side $side" \
     && git push -q "$TMP/src$side" HEAD:refs/heads/main)
done
ca=$(git -C "$TMP/srcA" rev-parse refs/heads/main)
cb=$(git -C "$TMP/srcB" rev-parse refs/heads/main)
[ "$ca" != "$cb" ] || fail "test setup: sides did not diverge"

# Each imports its own side while alone (data dirs start from c's state).
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$base"
expect 0 "$GUTS" --data "$TMP/b" import alice/repo "$base"
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/srcA"
expect 0 "$GUTS" --data "$TMP/b" import alice/repo "$TMP/srcB"

node_start a
node_start b
node_start c
wait_until 60 "a, b and c converge" repos_equal alice/repo "$TMP/a" "$TMP/b" "$TMP/c"

for n in a b c; do
  out="$TMP/exp-$n"
  expect 0 "$GUTS" --data "$TMP/$n" export alice/repo "$out"
  git -C "$out" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of $n's export"
  git -C "$out" for-each-ref --format='%(objectname) %(refname)' >"$TMP/refs-$n"
done
cmp "$TMP/refs-a" "$TMP/refs-b" || fail "refs differ between a and b"
cmp "$TMP/refs-a" "$TMP/refs-c" || fail "refs differ between a and c"
main=$(awk '$2 == "refs/heads/main" {print $1}' "$TMP/refs-a")
[ "$main" = "$ca" ] || [ "$main" = "$cb" ] || fail "main is neither side: $main"
loser=$ca; [ "$main" = "$ca" ] && loser=$cb
grep -E "^$loser refs/guts/conflicts/[0-9a-f]{32}/$loser/heads/main\$" "$TMP/refs-a" >/dev/null \
  || { cat "$TMP/refs-a" >&2; fail "loser $loser not kept under refs/guts/conflicts/"; }

for n in a b c; do node_stop $n; done
echo "ok"

#!/usr/bin/env bash
# Conflicts are listed and settled for every node. a and b move main apart
# while alone (both add side.txt with different text); once all three run,
# `guts conflicts` on every node names main, the winner and the kept commit.
# `guts resolve --merge` refuses (both sides changed side.txt) and names the
# path; `--take` of the kept commit settles it: every node ends with main at
# that commit and no conflict, and no new conflict record for the old
# winner. Round two diverges on different files: `--merge` makes a merge
# commit of both sides that every node takes, and git fsck accepts.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

key=alice/repo
base="$TMP/base"
make_repo "$base" 3
expect 0 "$GUTS" --data "$TMP/c" import $key "$base"

# diverge SIDE_DIR FILE TEXT FROM: one commit on FROM's main changing FILE,
# pushed into SIDE_DIR's main (a bare mirror made from base).
diverge() {
  local src=$1 file=$2 text=$3 from=$4 w="$TMP/work.$RANDOM"
  git clone -q "$from" "$w"
  (cd "$w" && printf '%s\n' "$text" >"$file" && git add "$file" && git commit -q -m "$text" \
     && git push -q -f "$src" HEAD:refs/heads/main)
  git -C "$src" rev-parse refs/heads/main
}
no_conflicts() {
  local n
  for n in "$@"; do
    [ "$("$GUTS" --data "$TMP/$n" conflicts $key)" = "no conflicts" ] || return 1
  done
}
main_is() {
  local want=$1 n; shift
  for n in "$@"; do
    [ "$("$GUTS" --data "$TMP/$n" refs --json $key | python3 -c '
import json, sys
print(next((r["id"] for r in json.load(sys.stdin) if r["name"] == "refs/heads/main"), ""))')" = "$want" ] \
      || return 1
  done
}

# ---- Round one: a content conflict, settled with --take.
git clone -q --mirror "$base" "$TMP/srcA"
git clone -q --mirror "$base" "$TMP/srcB"
ca=$(diverge "$TMP/srcA" side.txt "side A" "$base")
cb=$(diverge "$TMP/srcB" side.txt "side B" "$base")
for s in a b; do expect 0 "$GUTS" --data "$TMP/$s" import $key "$base"; done
expect 0 "$GUTS" --data "$TMP/a" import $key "$TMP/srcA"
expect 0 "$GUTS" --data "$TMP/b" import $key "$TMP/srcB"
node_start a
node_start b
node_start c
wait_until 60 "a, b and c converge" repos_equal $key "$TMP/a" "$TMP/b" "$TMP/c"

for n in a b c; do
  expect 0 "$GUTS" --data "$TMP/$n" conflicts --json $key
  python3 - "$TMP/out" "$ca" "$cb" <<'EOF' || fail "conflicts on $n: $(cat "$TMP/out")"
import json, sys
c = json.load(open(sys.argv[1]))
assert len(c) == 1, c
c = c[0]
assert c["repo"] == "alice/repo" and c["ref"] == "refs/heads/main", c
assert {c["winner"]["commit"], c["kept"]["commit"]} == set(sys.argv[2:4]), c
assert c["winner_only"] == 1 and c["kept_only"] == 1 and not c["merged"], c
assert c["record"].startswith("refs/guts/conflicts/"), c
EOF
done
# A new conflict is one warn line on every node (made there or received),
# and guts status counts it.
for n in a b c; do
  k=$(grep -c "conflict on refs/heads/main in $key" "$TMP/$n.log" || true)
  [ "$k" -eq 1 ] || fail "$n logged the conflict $k times"
done
expect 0 "$GUTS" --data "$TMP/b" status
grep -q "1 conflict (guts conflicts $key)" "$TMP/out" || fail "status: $(cat "$TMP/out")"
expect 0 "$GUTS" --data "$TMP/a" conflicts
grep -q "^alice/repo refs/heads/main$" "$TMP/out" || fail "text listing: $(cat "$TMP/out")"
grep -q "^1 conflict in 1 repository$" "$TMP/out" || fail "text count: $(cat "$TMP/out")"
"$GUTS" --data "$TMP/c" conflicts --json $key >"$TMP/c.json"
kept=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["kept"]["commit"])' "$TMP/c.json")

expect 1 "$GUTS" --data "$TMP/c" resolve $key main --merge
one_line_error
grep -q "conflicts in side.txt" "$TMP/err" || fail "merge refusal: $(cat "$TMP/err")"
expect 1 "$GUTS" --data "$TMP/c" resolve $key main --take 0000
one_line_error
expect 2 "$GUTS" --data "$TMP/c" resolve $key main
expect 2 "$GUTS" --data "$TMP/c" resolve $key main --take "$kept" --merge
expect 0 "$GUTS" --data "$TMP/c" resolve $key main --take "${kept:0:10}"
grep -q "1 conflict record deleted" "$TMP/out" || fail "resolve said: $(cat "$TMP/out")"
wait_until 60 "main at the kept commit on every node, no conflicts" \
  eval 'main_is "$kept" a b c && no_conflicts a b c'
wait_until 30 "a, b and c converge" repos_equal $key "$TMP/a" "$TMP/b" "$TMP/c"
no_conflicts a b c || fail "a conflict came back"
expect 1 "$GUTS" --data "$TMP/a" resolve $key main --take "$kept"
grep -q "no conflict on refs/heads/main" "$TMP/err" || fail "second resolve: $(cat "$TMP/err")"

# ---- Round two: different files on each side, settled with --merge.
for n in a b c; do node_stop $n; done
expect 0 "$GUTS" --data "$TMP/c" export $key "$TMP/settled"
git clone -q --mirror "$TMP/settled" "$TMP/srcA2"
git clone -q --mirror "$TMP/settled" "$TMP/srcB2"
ca=$(diverge "$TMP/srcA2" left.txt "left" "$TMP/settled")
cb=$(diverge "$TMP/srcB2" right.txt "right" "$TMP/settled")
expect 0 "$GUTS" --data "$TMP/a" import $key "$TMP/srcA2"
expect 0 "$GUTS" --data "$TMP/b" import $key "$TMP/srcB2"
node_start a
node_start b
node_start c
wait_until 60 "a, b and c converge again" \
  eval 'repos_equal $key "$TMP/a" "$TMP/b" "$TMP/c" && ! no_conflicts c'
expect 0 "$GUTS" --data "$TMP/b" resolve $key refs/heads/main --merge -m "both sides"
grep -q "merged as" "$TMP/out" || fail "merge said: $(cat "$TMP/out")"
wait_until 60 "the merge on every node, no conflicts" \
  eval 'no_conflicts a b c && repos_equal $key "$TMP/a" "$TMP/b" "$TMP/c"'
for n in a b c; do node_stop $n; done
out="$TMP/exp"
expect 0 "$GUTS" --data "$TMP/a" export $key "$out"
git -C "$out" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of the export"
m=$(git -C "$out" rev-parse refs/heads/main)
parents=$(git -C "$out" log -1 --format=%P "$m")
[ "$parents" = "$ca $cb" ] || [ "$parents" = "$cb $ca" ] || fail "merge parents: $parents (want $ca $cb)"
[ "$(git -C "$out" log -1 --format=%s "$m")" = "both sides" ] || fail "merge message"
git -C "$out" cat-file -e "$m:left.txt" && git -C "$out" cat-file -e "$m:right.txt" \
  && git -C "$out" cat-file -e "$m:side.txt" || fail "the merge lacks a side's file"
echo "ok"

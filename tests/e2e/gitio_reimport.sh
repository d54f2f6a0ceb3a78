#!/usr/bin/env bash
# Re-importing a git directory never loses work pushed through guts:// since
# its last import (docs/operations.md, "import's ref rules"). The sequence a
# user runs: import, push a new commit to a branch, a new branch and a tag
# through guts://, import the same (now old) directory again: every pushed
# ref is kept, one "kept" line each, exit 0. Then --force rewinds, --prune
# deletes, a repeated import changes nothing, the directory's own changes
# (a fast-forward, a deleted branch nobody else touched) still arrive, a
# first import into a repository made by a push only adds, and a ref clock
# at its limit stops the import before any record is written, and a ref
# whose object git cannot read (a lost loose object) stops it too.
# One process at a time touches the store: no node, no namespace.
set -euo pipefail
. "$(dirname "$0")/lib.bash"
. "$(dirname "$0")/lib/netns.sh" # make_repo, add_commit
[ -x "$GUTS_BUILD/git-remote-guts" ] || { echo "no git-remote-guts: build it first" >&2; exit 1; }
command -v mdb_load >/dev/null || { echo "no mdb_load (lmdb-utils): skipped" >&2; exit 77; }
export PATH="$GUTS_BUILD:$PATH"

# store_ref KEY REF: the id the store holds for REF (or "ref: X"), empty if none.
store_ref() {
  "$GUTS" refs "$1" | awk -v r="$2" '$NF == r {print ($1 == "ref:" ? "ref: " $2 : $1)}'
}
# summary: the counts of the last import's summary line.
summary() { grep -o '[0-9]* refs changed ([0-9]* deleted), [0-9]* kept' "$TMP/out"; }
# last_txn KEY: the env's last committed transaction (any write moves it).
last_txn() { mdb_stat -e "$GUTS_DATA/repos/$1" | awk '/Last transaction ID/ {print $NF}'; }

src="$TMP/src"
make_repo "$src" 3
expect 0 "$GUTS" import alice/repo "$src"
[ "$(summary)" = "4 refs changed (0 deleted), 0 kept" ] || fail "first import: $(cat "$TMP/out")"

# --- an import run twice changes nothing and writes nothing --------------------
txn=$(last_txn alice/repo)
expect 0 "$GUTS" import alice/repo "$src"
[ "$(summary)" = "0 refs changed (0 deleted), 0 kept" ] || fail "repeated import: $(cat "$TMP/out")"
[ "$(last_txn alice/repo)" = "$txn" ] || fail "a repeated import wrote to the store"
# The work tree and its .git (through a symlink too) are one directory.
ln -s "$src" "$TMP/link"
expect 0 "$GUTS" import alice/repo "$TMP/link/.git"
[ "$(summary)" = "0 refs changed (0 deleted), 0 kept" ] || fail "import of .git: $(cat "$TMP/out")"
[ "$(last_txn alice/repo)" = "$txn" ] || fail "an import of the same directory's .git wrote"

# --- push a commit to main, a new branch and a tag through guts:// -------------
c1="$TMP/c1"
expect 0 git clone -q guts://alice/repo "$c1"
add_commit "$c1" "pushed to main"
git -C "$c1" checkout -q -b topic
add_commit "$c1" "pushed on topic"
git -C "$c1" tag -a t1 -m "tag t1"
expect 0 git -C "$c1" push -q origin main topic t1
pushed_main=$(git -C "$c1" rev-parse main)
[ "$(store_ref alice/repo refs/heads/main)" = "$pushed_main" ] || fail "push did not move main"

# --- re-import the old directory: every pushed ref is kept -----------------------
for round in 1 2; do
  expect 0 "$GUTS" import alice/repo "$src"
  [ "$(summary)" = "0 refs changed (0 deleted), 3 kept" ] || fail "re-import $round: $(cat "$TMP/out")"
  for r in refs/heads/main refs/heads/topic refs/tags/t1; do
    [ "$(grep -c "^kept $r: " "$TMP/out")" -eq 1 ] || fail "re-import $round does not name $r: $(cat "$TMP/out")"
  done
  grep -q '^kept refs/heads/main: .*--force' "$TMP/out" || fail "main's line does not say --force"
  grep -q '^kept refs/heads/topic: not in the directory.*--prune' "$TMP/out" ||
    fail "topic's line does not say why: $(cat "$TMP/out")"
  [ "$(store_ref alice/repo refs/heads/main)" = "$pushed_main" ] || fail "re-import rewound main"
  [ "$(store_ref alice/repo refs/heads/topic)" = "$(git -C "$c1" rev-parse topic)" ] || fail "re-import deleted topic"
  [ "$(store_ref alice/repo refs/tags/t1)" = "$(git -C "$c1" rev-parse t1)" ] || fail "re-import deleted t1"
  [ -z "$(grep -v '^kept \|^imported ' "$TMP/out")" ] || fail "unexpected output: $(cat "$TMP/out")"
done
# A clone sees every pushed ref: nothing was lost.
expect 0 git clone -q guts://alice/repo "$TMP/c2"
[ "$(git -C "$TMP/c2" rev-parse origin/topic)" = "$(git -C "$c1" rev-parse topic)" ] || fail "clone lacks topic"
[ "$(git -C "$TMP/c2" rev-parse main)" = "$pushed_main" ] || fail "clone's main is not the pushed one"

# --- --force rewinds, --prune deletes ---------------------------------------------
expect 0 "$GUTS" import --force alice/repo "$src"
[ "$(summary)" = "1 refs changed (0 deleted), 2 kept" ] || fail "--force: $(cat "$TMP/out")"
[ "$(store_ref alice/repo refs/heads/main)" = "$(git -C "$src" rev-parse main)" ] || fail "--force did not rewind main"
grep -q '^kept refs/heads/main' "$TMP/out" && fail "--force still kept main"
expect 0 "$GUTS" import alice/repo "$src" --prune
[ "$(summary)" = "2 refs changed (2 deleted), 0 kept" ] || fail "--prune: $(cat "$TMP/out")"
[ -z "$(store_ref alice/repo refs/heads/topic)$(store_ref alice/repo refs/tags/t1)" ] || fail "--prune kept refs"
expect 0 "$GUTS" import alice/repo "$src"
[ "$(summary)" = "0 refs changed (0 deleted), 0 kept" ] || fail "import after --prune: $(cat "$TMP/out")"

# --- the directory's own changes still arrive ---------------------------------------
# main fast-forwards; feature, imported from here and touched by nobody
# since, is deleted as in the directory; a new branch is added.
add_commit "$src" "local work"
git -C "$src" branch -q -D feature
git -C "$src" branch -q newer main
expect 0 "$GUTS" import alice/repo "$src"
[ "$(summary)" = "3 refs changed (1 deleted), 0 kept" ] || fail "own changes: $(cat "$TMP/out")"
[ "$(store_ref alice/repo refs/heads/main)" = "$(git -C "$src" rev-parse main)" ] || fail "main did not fast-forward"
[ -z "$(store_ref alice/repo refs/heads/feature)" ] || fail "own deletion of feature not imported"

# A push fast-forwards main again; the directory fast-forwards past it too:
# not the directory's mark, but a fast-forward, so it applies.
expect 0 git -C "$c1" fetch -q origin
git -C "$c1" checkout -q -B main origin/main
add_commit "$c1" "pushed again"
expect 0 git -C "$c1" push -q origin main
expect 0 git -C "$src" pull -q --ff-only guts://alice/repo main
add_commit "$src" "past the push"
expect 0 "$GUTS" import alice/repo "$src"
[ "$(summary)" = "1 refs changed (0 deleted), 0 kept" ] || fail "fast-forward past a push: $(cat "$TMP/out")"
[ "$(store_ref alice/repo refs/heads/main)" = "$(git -C "$src" rev-parse main)" ] || fail "main did not fast-forward past the push"

# --- a first import into a repository made by a push only adds -----------------------
expect 0 git -C "$c1" push -q guts://bob/made topic
expect 0 "$GUTS" import bob/made "$src"
grep -q '^kept refs/heads/topic: not in the directory, and never imported from it' "$TMP/out" ||
  fail "first import into a pushed repository: $(cat "$TMP/out")"
[ "$(store_ref bob/made refs/heads/topic)" = "$(git -C "$c1" rev-parse topic)" ] || fail "first import deleted topic"
[ "$(store_ref bob/made refs/heads/main)" = "$(git -C "$src" rev-parse main)" ] || fail "first import did not add main"

# --- many kept refs: the first 20 are named, then a count ---------------------------------
for i in $(seq 1 22); do git -C "$c1" tag "many$i" main; done
expect 0 git -C "$c1" push -q origin 'refs/tags/many*:refs/tags/many*'
expect 0 "$GUTS" import alice/repo "$src"
[ "$(summary)" = "0 refs changed (0 deleted), 22 kept" ] || fail "22 pushed tags: $(cat "$TMP/out")"
[ "$(grep -c '^kept refs/tags/many' "$TMP/out")" -eq 20 ] || fail "not 20 kept lines: $(cat "$TMP/out")"
grep -qx 'kept 2 more refs' "$TMP/out" || fail "no count of the rest: $(cat "$TMP/out")"

# --- a ref clock at its limit: the import stops before writing a record -----------------
# (a peer's record at UINT64_MAX; clock + 1 would wrap to 0, a record that
# loses every merge)
printf 'VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n 636c6f636b\n ffffffffffffffff\nDATA=END\n' |
  mdb_load -s meta "$GUTS_DATA/repos/alice/repo"
git -C "$src" branch -q beyond main
expect 1 "$GUTS" import alice/repo "$src"
one_line_error
grep -q 'clock is at its limit' "$TMP/err" || fail "clock overflow: $(cat "$TMP/err")"
[ -z "$(store_ref alice/repo refs/heads/beyond)" ] || fail "a ref was written past the clock's limit"
# --- a source whose ref names an object git cannot read: no ref is written -------------
# (git's listing skips a lost loose object or a damaged .idx; the refs would
# name missing objects on every node)
lost="$TMP/lost"
git init -q "$lost"
(cd "$lost" && echo one >a && git add a && git -c user.name=t -c user.email=t@t commit -qm one)
tip=$(git -C "$lost" rev-parse HEAD)
rm "$lost/.git/objects/${tip:0:2}/${tip:2}"
expect 1 "$GUTS" import alice/lost "$lost"
one_line_error
grep -q "refs/heads/[a-z]* points at $tip, which git did not list" "$TMP/err" || fail "lost tip: $(cat "$TMP/err")"
[ -z "$("$GUTS" refs alice/lost 2>/dev/null)" ] || fail "refs written for a lost tip: $("$GUTS" refs alice/lost)"
echo "ok"

#!/usr/bin/env bash
# A varied git repository survives guts import + export object for object:
# several commits on two branches, a merge, annotated and lightweight tags, an
# executable, a symlink, an empty file, a 3 MB binary, non-ASCII names, both
# packed (with deltas) and loose objects. Then re-import is incremental, a
# deleted branch disappears from the next export, bad input fails with one
# line and touches nothing, and guts fsck finds the store clean.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

src="$TMP/src"
git init -q "$src"
cd "$src"
printf 'hello\n' >README
printf '#!/bin/sh\necho run\n' >run.sh
chmod +x run.sh
ln -s README link
: >empty
head -c 3000000 /dev/urandom >blob.bin
printf 'accents\n' >"café.txt"
printf 'kanji\n' >"日本語.md"
git add -A && git commit -q -m "first"
for i in 1 2 3 4 5; do
  seq 1 $((i * 500)) >numbers.txt
  printf 'line %d\n' "$i" >>README
  git add -A && git commit -q -m "main $i"
done
git tag -a v1.0 -m "release 1.0"
git checkout -q -b feature
for i in 1 2 3; do
  printf 'feature %d\n' "$i" >>feature.txt
  git add -A && git commit -q -m "feature $i"
done
git checkout -q main
printf 'more\n' >>README && git commit -q -am "main after branch"
git merge -q --no-ff -m "merge feature" feature
git tag light
# Pack what exists so far (git deltas the numbers and README versions), then
# add loose objects on top: import must handle both.
git repack -adq --depth=10
dd if=/dev/urandom of=blob.bin bs=1000 count=1 seek=100 conv=notrunc status=none
git commit -q -am "patch the binary"
cd "$TMP"

# --- import, export, compare ---------------------------------------------
expect 0 "$GUTS" import alice/repo "$src"
grep -q '^imported alice/repo: ' "$TMP/out" || fail "no summary line: $(cat "$TMP/out")"
[ ! -s "$TMP/err" ] || fail "stderr is not a terminal, yet import wrote: $(cat "$TMP/err")"
total=$(git_objects "$src" | wc -l)
grep -q " $total objects added ($total in git" "$TMP/out" || fail "summary: $(cat "$TMP/out"), want $total added"
expect 0 "$GUTS" export alice/repo "$TMP/out1.git"
git -C "$TMP/out1.git" fsck --strict --full --no-progress || fail "git fsck of the export"
same_repo "$src" "$TMP/out1.git"
[ "$(git -C "$TMP/out1.git" cat-file -t v1.0)" = tag ] || fail "annotated tag lost"
git -C "$TMP/out1.git" ls-tree HEAD | grep -q '^100755 blob .*	run.sh$' || fail "executable bit lost"
git -C "$TMP/out1.git" ls-tree HEAD | grep -q '^120000 blob .*	link$' || fail "symlink lost"
cmp <(git -C "$TMP/out1.git" cat-file blob HEAD:blob.bin) "$src/blob.bin" || fail "binary differs"

expect 0 "$GUTS" fsck alice/repo
grep -q ' 0 faults' "$TMP/out" || fail "fsck: $(cat "$TMP/out")"

# Same data again: nothing to add, nothing changed.
expect 0 "$GUTS" import alice/repo "$src"
grep -q ': 0 objects added .* 0 refs changed' "$TMP/out" || fail "re-import: $(cat "$TMP/out")"

# --- incremental: one new commit (commit + tree + blob), one deleted branch --
printf 'new\n' >"$src/new.txt"
git -C "$src" add new.txt
git -C "$src" commit -q -m "new file"
git -C "$src" branch -q -D feature
expect 0 "$GUTS" import alice/repo "$src"
grep -q ': 3 objects added .* 2 refs changed (1 deleted)' "$TMP/out" || fail "incremental: $(cat "$TMP/out")"
expect 0 "$GUTS" export --level 6 alice/repo "$TMP/out2.git"
git -C "$TMP/out2.git" fsck --strict --full --no-progress || fail "git fsck of the second export"
git -C "$TMP/out2.git" rev-parse -q --verify refs/heads/feature >/dev/null && fail "deleted branch exported"
same_repo "$src" "$TMP/out2.git"

# Status counts are the store's own (HEAD is a ref record too).
refs=$(($(git_refs "$src" | wc -l) + 1))
objs=$(git_objects "$src" | wc -l)
expect 0 "$GUTS" status
grep -Eq "^alice/repo +$objs +$refs +[0-9a-f]{32} +[0-9a-f]{32}$" "$TMP/out" || fail "status: $(cat "$TMP/out"), want $objs objects $refs refs"

# On a terminal (script(1) provides one) import and export draw progress.
if command -v script >/dev/null; then
  script -qec "'$GUTS' import erin/repo '$src'; '$GUTS' export erin/repo '$TMP/tty.git'" /dev/null |
    tr '\r' '\n' >"$TMP/tty"
  grep -q "^import: $objs/$objs objects, " "$TMP/tty" || fail "no import progress: $(cat "$TMP/tty")"
  grep -q "^export: $objs/$objs objects, " "$TMP/tty" || fail "no export progress: $(cat "$TMP/tty")"
fi

# --- bad input: one line, exit 1 or 2, nothing created ----------------------
expect 2 "$GUTS" --data "$TMP/nodata" import 'a/../b' "$src"
one_line_error
grep -q '"a/../b"' "$TMP/err" || fail "error does not name the key: $(cat "$TMP/err")"
[ ! -e "$TMP/nodata" ] || fail "a bad key created the data dir"
expect 1 "$GUTS" --data "$TMP/nodata" import bob/x "$TMP/not-a-repo"
one_line_error
grep -q 'not-a-repo' "$TMP/err" || fail "error does not name the directory: $(cat "$TMP/err")"
[ ! -e "$TMP/nodata" ] || fail "a bad git dir created the data dir"
expect 1 "$GUTS" export alice/repo "$TMP/out2.git"
one_line_error
expect 1 "$GUTS" export alice/nothere "$TMP/out3.git"
one_line_error
[ ! -e "$GUTS_DATA/repos/alice/nothere" ] || fail "export created a repository"

# A corrupt git object: one line naming it, and a first import that stored
# nothing leaves no repository behind.
git init -q "$TMP/broken"
printf 'one\n' >"$TMP/broken/f" && git -C "$TMP/broken" add f && git -C "$TMP/broken" commit -q -m one
bad=$(git -C "$TMP/broken" rev-parse HEAD:f)
obj="$TMP/broken/.git/objects/${bad:0:2}/${bad:2}"
chmod u+w "$obj" && head -c 8 "$obj" >"$TMP/trunc" && cat "$TMP/trunc" >"$obj"
expect 1 "$GUTS" import dave/broken "$TMP/broken"
one_line_error
grep -q "$bad" "$TMP/err" || fail "corrupt object not named: $(cat "$TMP/err")"
[ ! -e "$GUTS_DATA/repos/dave/broken" ] || fail "failed import left a repository"

# --- a bare source and an empty repository ---------------------------------
git clone -q --bare "$src" "$TMP/bare.git"
expect 0 "$GUTS" import carol/bare "$TMP/bare.git"
expect 0 "$GUTS" export carol/bare "$TMP/out4.git"
same_repo "$TMP/bare.git" "$TMP/out4.git"
git init -q --bare "$TMP/empty.git"
expect 0 "$GUTS" import carol/empty "$TMP/empty.git"
expect 0 "$GUTS" export carol/empty "$TMP/out5.git"
[ "$(git -C "$TMP/out5.git" symbolic-ref HEAD)" = refs/heads/main ] || fail "empty repository's HEAD"
expect 0 "$GUTS" fsck carol/empty
# --- a corrupted object record: guts fsck names it and fails ----------------
if command -v mdb_dump >/dev/null && command -v mdb_load >/dev/null; then
  id=$(printf 'new\n' | git hash-object --stdin)
  env="$GUTS_DATA/repos/alice/repo"
  mdb_dump -s objects "$env" | awk -v key=" $id" '
    hdr { if ($0 !~ /^db_pagesize=/) print; if ($0 == "HEADER=END") hdr = 0; next }
    want { v = substr($0, 1, length($0) - 1); print v (substr($0, length($0)) == "0" ? "1" : "0"); want = 0; next }
    $0 == key { print; want = 1 }
    END { print "DATA=END" }' hdr=1 >"$TMP/one"
  grep -q "^ $id\$" "$TMP/one" || fail "object $id not found in mdb_dump"
  mdb_load -s objects "$env" <"$TMP/one"
  expect 1 "$GUTS" fsck alice/repo
  cat "$TMP/out"
  grep -q "object $id" "$TMP/out" || fail "fsck did not name $id: $(cat "$TMP/out")"
  one_line_error
fi
echo "roundtrip_git: ok ($objs objects)"

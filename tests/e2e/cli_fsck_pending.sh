#!/usr/bin/env bash
# guts fsck means what git fsck means (issue 13, item 4): a fault is damage
# to what the refs reach; objects no ref reaches whose links are not all
# stored (what an interrupted import or pull leaves) are one summary line
# and exit 0. The store is made deterministically from a git repository
# holding objects with absent links (git hash-object --literally, git
# mktree --missing), imported as is:
#   - unreferenced: a commit and its tree of 150 entries naming absent
#     blobs, no ref to them: one "1 object not yet referenced" line (the
#     tree: the commit's own link is stored), exit 0, no fault line;
#   - referenced: a branch at such a commit: its missing links are faults,
#     exit 1, the first 100 shown and the rest counted on one line;
#   - --json gives the same counts;
#   - a tree whose subtree entry has the zero-padded mode "040000" (git
#     hash-object -t tree --literally) and whose subtree is absent: the
#     missing subtree is a fault (the mode is read as octal, a directory).
set -euo pipefail
. "$(dirname "$0")/lib.bash"

src="$TMP/src"
git init -q "$src"
(cd "$src" && echo hi >f && git add f && git commit -q -m one)
# 150 tree entries naming blobs that were never stored.
missing_tree() {
  local i
  for i in $(seq 1 150); do
    printf '100644 blob %s\tf%03d\n' "$(printf 'missing %d %s' "$i" "$1" | git -C "$src" hash-object --stdin)" "$i"
  done | git -C "$src" mktree --missing
}
tree=$(missing_tree a)
commit=$(printf 'tree %s\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\npending\n' "$tree" |
  git -C "$src" hash-object -t commit --literally -w --stdin)

expect 0 "$GUTS" import p/r "$src"
expect 0 "$GUTS" fsck p/r
grep -q '^p/r: notice: 1 object not yet referenced, from an interrupted import or pull: guts import again or let the node finish$' "$TMP/out" ||
  fail "no summary line: $(cat "$TMP/out")"
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "fsck printed more than the summary and the total: $(cat "$TMP/out")"
grep -q ' 0 faults' "$TMP/out" || fail "fsck: $(cat "$TMP/out")"
expect 0 "$GUTS" fsck --json p/r
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["faults"] == 0 and d["not_yet_referenced"] == 1 and d["shown"] == [], d' "$TMP/out" ||
  fail "fsck --json: $(cat "$TMP/out")"

# A ref to the commit: now the refs reach 150 missing objects.
git -C "$src" update-ref refs/heads/broken "$commit"
expect 0 "$GUTS" import p/r "$src"
expect 1 "$GUTS" fsck p/r
one_line_error
grep -q '150 faults found' "$TMP/err" || fail "fsck: $(cat "$TMP/err")"
[ "$(grep -c 'links to missing' "$TMP/out")" -eq 100 ] || fail "fsck did not cap its fault lines at 100: $(head -3 "$TMP/out")"
grep -q '^p/r: ... and 50 more faults not shown$' "$TMP/out" || fail "no count of the faults not shown: $(tail -3 "$TMP/out")"
grep -q "tree $tree links to missing entry " "$TMP/out" || fail "the tree's missing entries are not named"
if grep -q 'not yet referenced' "$TMP/out"; then fail "reachable objects counted as not yet referenced"; fi
expect 1 "$GUTS" fsck --json p/r
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["faults"] == 150 and len(d["shown"]) == 100 and d["not_shown"] == 50, d
assert d["not_yet_referenced"] == 0, d' "$TMP/out" || fail "fsck --json: $(head -c 600 "$TMP/out")"

# A zero-padded "040000" subtree entry naming a subtree never stored.
subtree=$(printf 'absent subtree' | git -C "$src" hash-object --stdin)
blob=$(printf 'top' | git -C "$src" hash-object -w --stdin)
padded=$(/usr/bin/python3 -c '
import sys
b = bytes.fromhex
sys.stdout.buffer.write(b"100644 f\0" + b(sys.argv[1]) + b"040000 sub\0" + b(sys.argv[2]))' "$blob" "$subtree" |
  git -C "$src" hash-object -t tree --literally -w --stdin)
pcommit=$(printf 'tree %s\nauthor A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n\npadded\n' "$padded" |
  git -C "$src" hash-object -t commit --literally -w --stdin)
git -C "$src" update-ref -d refs/heads/broken
git -C "$src" update-ref refs/heads/padded "$pcommit"
expect 0 "$GUTS" import p/z "$src"
expect 1 "$GUTS" fsck p/z
grep -q "tree $padded links to missing entry $subtree" "$TMP/out" ||
  fail "the missing 040000 subtree is not a fault: $(cat "$TMP/out")"
echo "ok"

#!/usr/bin/env bash
# Real git drives git-remote-guts (build dir on PATH, GUTS_DATA a temp dir):
# clone of an imported repository (refs, tags, HEAD, one pack when large),
# the same clone again from the helper's pack cache (and a damaged one),
# a clone of a store with a damaged object failing,
# fetch after new commits sends only the new objects, pull, push of a new
# branch and an annotated tag, deletion (a tombstone), a refused
# non-fast-forward, a forced push, a push that creates a repository. After
# each step the store is read back independently (guts export, guts status
# --json) and compared with what git has. The helper's own rules (for a
# store that changed after git listed it) are driven through the protocol.
set -euo pipefail
. "$(dirname "$0")/lib.bash"
# make_repo and add_commit (only functions are taken; no namespace here: one
# process at a time touches the store).
. "$(dirname "$0")/lib/netns.sh"
HELPER="$GUTS_BUILD/git-remote-guts"
[ -x "$HELPER" ] || { echo "no $HELPER: build it first" >&2; exit 1; }
export PATH="$GUTS_BUILD:$PATH"

# store_refs KEY: "id name" of every live ref in the store, and HEAD, read
# by exporting the repository (not through the helper).
store_refs() {
  local out="$TMP/export-$RANDOM"
  "$GUTS" export "$1" "$out" >/dev/null
  git -C "$out" fsck --strict --no-progress >/dev/null 2>&1 || fail "export of $1 fails git fsck"
  git -C "$out" for-each-ref --format='%(objectname) %(refname)'
  echo "HEAD $(git -C "$out" symbolic-ref -q HEAD || git -C "$out" rev-parse HEAD)"
  rm -rf "$out"
}

# status_field KEY FIELD: one number from guts status --json.
status_field() {
  "$GUTS" status --json | /usr/bin/python3 -c '
import json, sys
for r in json.load(sys.stdin)["repos"]:
    if r["key"] == sys.argv[1]:
        print(r[sys.argv[2]])' "$1" "$2"
}

# store_ref KEY REF: the id the store holds for REF, empty if none.
store_ref() { store_refs "$1" | awk -v r="$2" '$2 == r {print $1}'; }

# loose_count DIR: loose objects in a repository.
loose_count() { find "$1/.git/objects" -path '*/pack' -prune -o -type f -path '*/objects/??/*' -print | wc -l; }

# --- clone --------------------------------------------------------------------
src="$TMP/src"
make_repo "$src" 5
# Enough files that the clone is over git's unpack limit: it must be a pack.
(cd "$src" && mkdir many && for i in $(seq 1 150); do echo "$i" >"many/f$i"; done &&
  git add -A && git commit -q -m many)
expect 0 "$GUTS" import alice/repo "$src"

expect 0 git clone -q guts://alice/repo "$TMP/c1"
c1="$TMP/c1"
git -C "$c1" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of the clone"
diff <(git -C "$src" for-each-ref --format='%(objectname) %(refname:strip=2)' refs/heads) \
     <(git -C "$c1" for-each-ref --format='%(objectname) %(refname:strip=3)' refs/remotes/origin |
       grep -v '^[0-9a-f]* HEAD$') >"$TMP/diff" || { cat "$TMP/diff" >&2; fail "branches differ after clone"; }
diff <(git -C "$src" for-each-ref --format='%(objectname) %(refname)' refs/tags) \
     <(git -C "$c1" for-each-ref --format='%(objectname) %(refname)' refs/tags) >"$TMP/diff" ||
  fail "tags differ after clone"
[ "$(git -C "$c1" symbolic-ref HEAD)" = refs/heads/main ] || fail "clone did not check out main"
[ "$(git -C "$c1" symbolic-ref refs/remotes/origin/HEAD)" = refs/remotes/origin/main ] ||
  fail "origin/HEAD is not origin/main"
[ "$(git -C "$c1" rev-parse HEAD)" = "$(git -C "$src" rev-parse main)" ] || fail "HEAD commit differs"
diff <(git_objects "$src") <(git -C "$c1" cat-file --batch-all-objects --batch-check | sort) >/dev/null ||
  fail "the clone's objects differ from the source's"
[ "$(loose_count "$c1")" -eq 0 ] || fail "clone left $(loose_count "$c1") loose objects, want one pack"
[ "$(find "$c1/.git/objects/pack" -name '*.pack' | wc -l)" -eq 1 ] || fail "clone: want exactly one pack"
[ -z "$(find "$c1/.git/objects/pack" -name '*.keep')" ] || fail "clone left a .keep (git removes the lock)"

# The clone's pack was kept (DATA/git-packs): the same clone again is that
# file as it is, and gives the same repository. A damaged cached pack fails
# the clone (its trailer is checked before it goes) and is removed; the
# clone after it makes the pack again.
packs() { find "$GUTS_DATA/git-packs" -name '*.pack' 2>/dev/null; }
[ "$(packs | wc -l)" -eq 1 ] || fail "the clone left $(packs | wc -l) cached packs, want 1"
cached=$(packs)
expect 0 git clone -q guts://alice/repo "$TMP/c1b"
git -C "$TMP/c1b" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of the cached clone"
cmp "$cached" "$TMP"/c1b/.git/objects/pack/*.pack || fail "the second clone's pack is not the cached one"
diff <(git -C "$c1" for-each-ref --format='%(objectname) %(refname)') \
     <(git -C "$TMP/c1b" for-each-ref --format='%(objectname) %(refname)') >/dev/null ||
  fail "refs differ between the clone and the cached clone"
printf 'X' | dd of="$cached" bs=1 seek=100 conv=notrunc status=none
expect 128 git clone -q guts://alice/repo "$TMP/c1c"
grep -q 'cached pack was damaged' "$TMP/err" || fail "damaged cached pack: $(cat "$TMP/err")"
[ ! -e "$cached" ] || fail "the damaged cached pack was not removed"
expect 0 git clone -q guts://alice/repo "$TMP/c1d"
git -C "$TMP/c1d" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of the clone after a damaged cache"
[ "$(packs | wc -l)" -eq 1 ] || fail "the clone after a damaged cache did not cache its pack"
rm -rf "$TMP/c1b" "$TMP/c1c" "$TMP/c1d"

# A repository that does not exist: git fails, with our one-line reason.
expect 128 git clone -q guts://alice/nope "$TMP/nope"
grep -q '^guts: no repository alice/nope in ' "$TMP/err" || fail "missing repo: $(cat "$TMP/err")"
expect 128 git clone -q guts://too/many/parts "$TMP/nope"
grep -q '^guts: bad URL' "$TMP/err" || fail "bad URL: $(cat "$TMP/err")"

# --- fetch after new commits: only the new objects travel ------------------------
add_commit "$src" "after clone"
expect 0 "$GUTS" import alice/repo "$src"
before=$(loose_count "$c1")
expect 0 git -C "$c1" fetch -q
[ "$(git -C "$c1" rev-parse origin/main)" = "$(git -C "$src" rev-parse main)" ] || fail "fetch did not move origin/main"
# One commit changing README: a commit, a tree, a blob.
[ $(($(loose_count "$c1") - before)) -eq 3 ] || fail "fetch sent $(($(loose_count "$c1") - before)) objects, want 3"
git -C "$c1" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck after fetch"

# A larger fetch is one more pack (not loose objects), lock released.
(cd "$src" && mkdir more && for i in $(seq 1 120); do echo "more $i" >"more/m$i"; done &&
  git add -A && git commit -q -m more)
expect 0 "$GUTS" import alice/repo "$src"
before=$(loose_count "$c1")
expect 0 git -C "$c1" fetch -q
[ "$(git -C "$c1" rev-parse origin/main)" = "$(git -C "$src" rev-parse main)" ] || fail "large fetch"
[ "$(loose_count "$c1")" -eq "$before" ] || fail "a fetch of 123 objects left loose objects"
[ "$(find "$c1/.git/objects/pack" -name '*.pack' | wc -l)" -eq 2 ] || fail "large fetch: want a second pack"
[ -z "$(find "$c1/.git/objects/pack" -name '*.keep')" ] || fail "fetch left a .keep"
git -C "$c1" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck after the large fetch"

# --- pull ---------------------------------------------------------------------------
add_commit "$src" "for pull"
expect 0 "$GUTS" import alice/repo "$src"
expect 0 git -C "$c1" pull -q --ff-only
[ "$(git -C "$c1" rev-parse HEAD)" = "$(git -C "$src" rev-parse main)" ] || fail "pull did not fast-forward"

# --- push a new branch and an annotated tag -----------------------------------------
clock0=$(status_field alice/repo clock)
git -C "$c1" checkout -q -b topic
printf 'topic\n' >"$c1/topic.txt"
git -C "$c1" add topic.txt && git -C "$c1" commit -q -m topic
git -C "$c1" tag -a t1 -m "tag t1"
expect 0 git -C "$c1" push -q origin topic t1
[ "$(store_ref alice/repo refs/heads/topic)" = "$(git -C "$c1" rev-parse topic)" ] || fail "topic not in the store"
[ "$(store_ref alice/repo refs/tags/t1)" = "$(git -C "$c1" rev-parse t1)" ] || fail "tag t1 not in the store"
[ "$(git -C "$c1" cat-file -t t1)" = tag ] || fail "t1 is not annotated"
[ "$(status_field alice/repo clock)" -eq $((clock0 + 1)) ] || fail "push did not stamp clock + 1"
# git's remote-tracking ref follows the helper's "ok".
[ "$(git -C "$c1" rev-parse origin/topic)" = "$(git -C "$c1" rev-parse topic)" ] || fail "origin/topic not updated"
expect 0 "$GUTS" fsck alice/repo
grep -q ' 0 faults' "$TMP/out" || fail "guts fsck after push: $(cat "$TMP/out")"

# --- delete a branch: a tombstone ----------------------------------------------------
tomb0=$(status_field alice/repo tombstones)
expect 0 git -C "$c1" push -q --delete origin feature
[ -z "$(store_ref alice/repo refs/heads/feature)" ] || fail "deleted branch still in the store"
[ "$(status_field alice/repo tombstones)" -eq $((tomb0 + 1)) ] || fail "deletion left no tombstone"
git -C "$c1" rev-parse -q --verify refs/remotes/origin/feature >/dev/null && fail "origin/feature survived"

# --- a non-fast-forward is refused -----------------------------------------------------
topic_before=$(store_ref alice/repo refs/heads/topic)
git -C "$c1" reset -q --hard HEAD~1
printf 'diverged\n' >"$c1/div.txt"
git -C "$c1" add div.txt && git -C "$c1" commit -q -m diverged
expect 1 git -C "$c1" push origin topic
grep -q 'non-fast-forward' "$TMP/err" || fail "no non-fast-forward message: $(cat "$TMP/err")"
[ "$(store_ref alice/repo refs/heads/topic)" = "$topic_before" ] || fail "refused push changed the store"

# --- a forced push is an update like any other -------------------------------------------
expect 0 git -C "$c1" push -q --force origin topic
[ "$(store_ref alice/repo refs/heads/topic)" = "$(git -C "$c1" rev-parse topic)" ] || fail "forced push not stored"
expect 0 git -C "$c1" push -q origin +topic:refs/heads/other
[ "$(store_ref alice/repo refs/heads/other)" = "$(git -C "$c1" rev-parse topic)" ] || fail "+refspec push not stored"

# --- the helper's own rules, for a store that changed after git listed it ---------------
# Drive the protocol directly: git would have refused these itself.
helper_push() { # helper_push LINE...: a push batch; prints the helper's replies
  { for l in "$@"; do printf 'push %s\n' "$l"; done; printf '\n'; } |
    GIT_DIR="$c1/.git" "$HELPER" origin guts://alice/repo
}
old_commit=$(git -C "$c1" rev-parse HEAD~1)
helper_push "$old_commit:refs/heads/topic" "refs/tags/v1:refs/tags/t1" >"$TMP/replies"
grep -qx 'error refs/heads/topic non-fast-forward' "$TMP/replies" || fail "helper: $(cat "$TMP/replies")"
grep -qx 'error refs/tags/t1 already exists' "$TMP/replies" || fail "helper: $(cat "$TMP/replies")"
helper_push "+$old_commit:refs/heads/topic" >"$TMP/replies"
grep -qx 'ok refs/heads/topic' "$TMP/replies" || fail "helper forced: $(cat "$TMP/replies")"
[ "$(store_ref alice/repo refs/heads/topic)" = "$old_commit" ] || fail "helper forced push not stored"
helper_push "refs/heads/main:refs/heads/bad..name" >"$TMP/replies"
grep -qx 'error refs/heads/bad..name invalid ref name' "$TMP/replies" || fail "helper: $(cat "$TMP/replies")"

# --- a push creates a repository ------------------------------------------------------------
expect 0 git -C "$c1" push -q guts://bob/fresh main topic
refs=$(store_refs bob/fresh)
grep -qx "$(git -C "$c1" rev-parse main) refs/heads/main" <<<"$refs" || fail "bob/fresh main: $refs"
grep -qx "HEAD refs/heads/main" <<<"$refs" || fail "bob/fresh HEAD: $refs"
[ "$(status_field bob/fresh objects)" -eq "$(git -C "$c1" rev-list --objects main topic | wc -l)" ] ||
  fail "bob/fresh holds other than the pushed objects"
expect 0 git clone -q guts://bob/fresh "$TMP/c2"
[ "$(git -C "$TMP/c2" rev-parse HEAD)" = "$(git -C "$c1" rev-parse main)" ] || fail "clone of a pushed repo"
git -C "$TMP/c2" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of the second clone"

# A push of nothing new is up to date and writes nothing.
txn=$(status_field bob/fresh clock)
expect 0 git -C "$c1" push guts://bob/fresh main
[ "$(status_field bob/fresh clock)" -eq "$txn" ] || fail "an up-to-date push wrote refs"

# --- versions git keeps whole travel as deltas --------------------------------------------
# fast-import deltas a blob only against the blob written just before it:
# two unrelated files edited in turn leave every version whole in git's
# pack. A push (or an import) gives each the previous version of its path
# as a hint, so the store keeps deltas and a clone's pack carries them as
# git deltas.
whole="$TMP/whole.git"
git init -q --bare "$whole"
/usr/bin/python3 - <<'PY' | git -C "$whole" fast-import --quiet
import random, sys
rng = random.Random(5)
words = {"a.txt": ["alpha", "beta", "gamma", "delta"], "b.txt": ["one", "two", "three", "four"]}
files = {n: [" ".join(rng.choice(w) for _ in range(8)) + "\n" for _ in range(120)]
         for n, w in words.items()}
out = sys.stdout.buffer
for c in range(60):
    out.write(b"commit refs/heads/main\ncommitter T <t@guts.invalid> %d +0000\n" % (1700000000 + c))
    out.write(b"data 2\nc\n")  # no "from": the branch goes on from its tip
    for n, w in words.items():
        files[n][rng.randrange(120)] = " ".join(rng.choice(w) for _ in range(8)) + "\n"
        body = "".join(files[n]).encode()
        out.write(b"M 100644 inline %s\ndata %d\n%s\n" % (n.encode(), len(body), body))
PY
blob_deltas() { git verify-pack -v "$1"/objects/pack/*.idx | awk '$2 == "blob" && NF >= 7' | wc -l; }
[ "$(blob_deltas "$whole")" -lt 10 ] || fail "precondition: fast-import made blob deltas"
expect 0 git -C "$whole" push -q guts://carol/whole main
expect 0 git clone -q --bare guts://carol/whole "$TMP/whole-clone.git"
git -C "$TMP/whole-clone.git" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of whole-clone"
[ "$(blob_deltas "$TMP/whole-clone.git")" -ge 100 ] ||
  fail "clone of whole versions has $(blob_deltas "$TMP/whole-clone.git") blob deltas, want >= 100 of 120"
# guts import takes the same hints (names from a rev-list beside its listing).
expect 0 "$GUTS" import carol/imported "$whole"
expect 0 git clone -q --bare guts://carol/imported "$TMP/imported-clone.git"
[ "$(blob_deltas "$TMP/imported-clone.git")" -ge 100 ] ||
  fail "clone of an import of whole versions has $(blob_deltas "$TMP/imported-clone.git") blob deltas"
# A commit pushed from a working clone is loose in git (no delta base at
# all): its blob and trees are compressed against the versions at the same
# paths in the ref's old target, and a fresh clone carries the blob as a delta.
work="$TMP/whole-work"
expect 0 git clone -q guts://carol/whole "$work"
echo "one more line" >>"$work/a.txt"
git -C "$work" commit -qam more
[ -z "$(git -C "$work" verify-pack -v "$work"/.git/objects/pack/*.idx 2>/dev/null |
  awk -v b="$(git -C "$work" rev-parse main:a.txt)" '$1 == b')" ] || fail "precondition: the new blob is packed"
expect 0 git -C "$work" push -q origin main
expect 0 git clone -q --bare guts://carol/whole "$TMP/whole-clone2.git"
git verify-pack -v "$TMP"/whole-clone2.git/objects/pack/*.idx |
  awk -v b="$(git -C "$work" rev-parse main:a.txt)" '$1 == b && NF >= 7 {f = 1} END {exit !f}' ||
  fail "a pushed loose blob is not a delta in a fresh clone"

# A clone's entries are not rehashed by the helper (index-pack hashes them):
# a damaged stored object still fails the clone, naming it, and leaves
# neither a clone nor a cached pack.
dsrc="$TMP/dsrc"
make_repo "$dsrc" 2
(cd "$dsrc" && mkdir many && for i in $(seq 1 120); do echo "d$i" >"many/f$i"; done &&
  printf 'damage-me 0123456789\n' >bad && git add -A && git commit -q -m bad)
expect 0 "$GUTS" import dave/damaged "$dsrc"
damage_record "$GUTS_DATA/repos/dave/damaged" 'damage-me 0123456789'
before=$(find "$GUTS_DATA/git-packs" -type f | wc -l)
expect 128 git clone -q --mirror guts://dave/damaged "$TMP/dclone"
grep -q "$(git -C "$dsrc" rev-parse HEAD:bad)" "$TMP/err" || fail "damaged object: $(cat "$TMP/err")"
[ ! -e "$TMP/dclone" ] || fail "a clone of a damaged store was left behind"
[ "$(find "$GUTS_DATA/git-packs" -type f | wc -l)" -eq "$before" ] ||
  fail "a clone of a damaged store left files in git-packs"
echo "ok"

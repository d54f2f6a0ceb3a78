#!/usr/bin/env bash
# Prepared clone packs (git_prepare.c), in a private network namespace:
#   - after an import the node writes the repository's clone pack into
#     DATA/git-packs on its own; a mirror clone and a plain clone over HTTP
#     are that file byte for byte, pass `git fsck --strict` and have the
#     source's refs and objects; so is a `git clone --mirror guts://`
#     through the helper on the node's data dir;
#   - a push through guts:// makes the node prepare the new refs' pack,
#     which the next clone is;
#   - with a ref outside branches and tags, the plain clone's pack is
#     prepared first and is the start of the mirror clone's;
#   - with the cache emptied, a clone that reads slowly writes the pack
#     while a second clone of the same refs streams that build as it grows
#     (guts_git_packs_followed_total), both whole and checked; when the
#     writer's client leaves, the build goes on for the follower.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v curl >/dev/null || { echo "no curl: skipped" >&2; exit 77; }
export PATH="$GUTS_BUILD:$PATH" # git-remote-guts
SRC_DIR=${GUTS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}

B=http://127.0.0.1:7174
src="$TMP/src.git"
COMMITS=150 TOUCH=12 FILES=300 REFS=60 "$SRC_DIR/scripts/bench-repo" "$src"
# 18 MB that does not compress: a pack that takes a slow reader a while
git clone -q "$src" "$TMP/work"
for i in 1 2 3; do head -c 6000000 /dev/urandom >"$TMP/work/random$i.bin"; done
git -C "$TMP/work" add -A
git -C "$TMP/work" commit -q -m "random data"
git -C "$TMP/work" push -q "$src" HEAD
expect 0 "$GUTS" --data "$TMP/a" import alice/big "$src"
NODE_LOG_LEVEL=debug node_start a --http 127.0.0.1:7174
metric() { curl -sS --max-time 10 "$B/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
packs() { ls "$TMP"/a/git-packs/*.pack 2>/dev/null | sort; }
one_pack() { [ "$(packs | wc -l)" = 1 ]; }

# ---- prepared after the import, without a clone
wait_until 120 "the node prepared a clone pack" one_pack
prepared=$(packs)
[ "$(metric guts_git_packs_prepared_total)" = 1 ] || fail "guts_git_packs_prepared_total is not 1"
# clone_is URL DIR PACK: a mirror clone of URL into DIR is PACK, and right
clone_is() {
  git clone -q --mirror "$1" "$2" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "git clone --mirror $1"; }
  git -C "$2" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of $2"
  same_repo "$src" "$2"
  cmp -s "$3" "$2"/objects/pack/*.pack || fail "the clone $2 is not the prepared pack $3"
}
clone_is "$B/alice/big" "$TMP/m1" "$prepared"
git clone -q "$B/alice/big" "$TMP/plain" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "a plain clone"; }
git -C "$TMP/plain" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of the plain clone"
cmp -s "$prepared" "$TMP"/plain/.git/objects/pack/*.pack || fail "the plain clone is not the prepared pack"
GUTS_DATA="$TMP/a" clone_is guts://alice/big "$TMP/g1" "$prepared"
[ "$(metric guts_git_packs_prepared_total)" = 1 ] || fail "the clones prepared more packs"

# ---- a push through guts://: the new refs' pack is prepared
printf 'after the prepare\n' >>"$TMP/work/random1.bin"
git -C "$TMP/work" commit -q -am "after the prepare"
git -C "$TMP/work" push -q "$src" HEAD:refs/heads/pushed
GUTS_DATA="$TMP/a" git -C "$src" push -q guts://alice/big refs/heads/pushed 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "push through guts://"; }
newer() { [ "$(metric guts_git_packs_prepared_total)" = 2 ]; }
wait_until 120 "the node prepared the pushed refs' pack" newer
second=$(ls -t "$TMP"/a/git-packs/*.pack | head -1)
[ "$second" != "$prepared" ] || fail "no new pack after the push"
clone_is "$B/alice/big" "$TMP/m2" "$second"

# ---- a ref outside branches and tags (as GitHub's refs/pull/*): with no
# pack cached, the plain clone's pack is prepared first and the mirror
# clone's starts with its entries byte for byte, then the ref's objects
rm -rf "$TMP/a/git-packs"
printf 'a pull request\n' >>"$TMP/work/random2.bin"
git -C "$TMP/work" commit -q -am "a pull request"
git -C "$TMP/work" push -q "$src" HEAD:refs/pull/1/head
GUTS_DATA="$TMP/a" git -C "$src" push -q guts://alice/big refs/pull/1/head 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "push of refs/pull/1/head through guts://"; }
both() { [ "$(metric guts_git_packs_prepared_total)" = 4 ] && [ "$(metric guts_git_packs_preparing)" = 0 ]; }
wait_until 120 "the node prepared the plain and the mirror clones' packs" both
git clone -q "$B/alice/big" "$TMP/plain2" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "a plain clone"; }
clone_is "$B/alice/big" "$TMP/m5" "$(ls -S "$TMP"/a/git-packs/*.pack | head -1)" # the larger
plain_pack=$(ls "$TMP"/plain2/.git/objects/pack/*.pack)
mirror_pack=$(ls "$TMP"/m5/objects/pack/*.pack)
[ "$(stat -c %s "$mirror_pack")" -gt "$(stat -c %s "$plain_pack")" ] || fail "the mirror clone's pack is not larger than the plain clone's"
cmp -s -n $(($(stat -c %s "$plain_pack") - 32)) <(tail -c +13 "$plain_pack") <(tail -c +13 "$mirror_pack") ||
  fail "the mirror clone's pack does not start with the plain clone's entries"
[ "$(metric guts_git_packs_prepared_total)" = 4 ] || fail "the clones prepared more packs"

# ---- a clone arriving while another writes its pack follows that build
rm -rf "$TMP/a/git-packs"
wants=$(git ls-remote "$B/alice/big" | awk '$2 != "HEAD" && $2 !~ /\^{}$/ {print $1}' | sort -u)
pkt() { printf '%04x%s' $((${#1} + 4)) "$1"; }
{ pkt "command=fetch"; printf 0001; for w in $wants; do pkt "want $w"; done; pkt "no-progress"; pkt done; printf 0000; } >"$TMP/fetch"
# a slow reader (18 MB at 1 MB/s): the pack thread waits on its pipe, the
# build stays open
slow_clone() {
  curl -sS --max-time 120 --limit-rate 1M -o "$TMP/slow" -H 'Git-Protocol: version=2' \
    -H 'Content-Type: application/x-git-upload-pack-request' --data-binary @"$TMP/fetch" \
    "$B/alice/big/git-upload-pack" &
  slow=$!
  EXTRA_PIDS+=("$slow")
}
slow_clone
building() { ls "$TMP"/a/git-packs/.*-* >/dev/null 2>&1; }
wait_until 30 "the slow clone writes the pack" building
followed0=$(metric guts_git_packs_followed_total)
git clone -q --mirror "$B/alice/big" "$TMP/m3" 2>"$TMP/err" || { cat "$TMP/err" >&2; fail "a clone during a build"; }
git -C "$TMP/m3" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of the clone that followed a build"
same_repo "$src" "$TMP/m3"
f=$(metric guts_git_packs_followed_total)
[ "$f" = $((followed0 + 1)) ] || fail "the clone did not follow the build ($followed0 -> $f)"
wait "$slow" || fail "the slow clone failed"
[ "$(stat -c %s "$TMP/slow")" -gt 18000000 ] || fail "the slow clone's answer is short"
one_pack || fail "not one cached pack after the two clones"
cmp -s "$(packs)" "$TMP"/m3/objects/pack/*.pack || fail "the followed clone is not the cached pack"

# ---- the writer's client leaves: the build goes on for the clone that follows it
rm -rf "$TMP/a/git-packs"
slow_clone
wait_until 30 "the slow clone writes the pack again" building
git clone -q --mirror "$B/alice/big" "$TMP/m4" 2>"$TMP/err4" &
m4=$!
EXTRA_PIDS+=("$m4")
follows() { [ "$(metric guts_git_packs_followed_total)" = $((followed0 + 2)) ]; }
wait_until 30 "a second clone follows the build" follows
kill "$slow"
wait "$slow" || true
wait "$m4" || { cat "$TMP/err4" >&2; fail "the follower failed when the writer's client left"; }
git -C "$TMP/m4" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck --strict of the follower"
same_repo "$src" "$TMP/m4"
wait_until 10 "the pack cached" one_pack
cmp -s "$(packs)" "$TMP"/m4/objects/pack/*.pack || fail "the follower is not the cached pack"
echo "node_git_prepare: ok"

#!/usr/bin/env bash
# `git push guts://...` into one node's data dir is clonable from another
# node's data dir within seconds: two guts-node processes in a private
# network namespace, a push (branch and annotated tag) into a repository that
# does not exist yet with GUTS_DATA=A, then GUTS_DATA=B git clone polls
# until it succeeds with the pushed refs; a second push (a new commit) is
# fetched from B the same way. No address is given anywhere.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
[ -x "$GUTS_BUILD/git-remote-guts" ] || fail "no $GUTS_BUILD/git-remote-guts: build it first"
export PATH="$GUTS_BUILD:$PATH"

# Seconds from push to clonable on the other node.
DEADLINE=${REMOTE_NODES_DEADLINE:-15}

src="$TMP/src"
make_repo "$src" 4

node_start a
node_start b
wait_until 20 "a and b see each other" peers_at_least a 1
wait_until 10 "b sees a" peers_at_least b 1

# clone_from_b DIR: clone from B's store; succeeds once the repository and
# its main branch have arrived.
clone_from_b() {
  rm -rf "$1"
  GUTS_DATA="$TMP/b" git clone -q guts://alice/pushed "$1" 2>/dev/null &&
    git -C "$1" rev-parse -q --verify refs/remotes/origin/main >/dev/null
}

t0=$(date +%s%N)
GUTS_DATA="$TMP/a" git -C "$src" push -q guts://alice/pushed main feature v1 ||
  fail "push into a's data dir"
wait_until "$DEADLINE" "push into a clonable from b" clone_from_b "$TMP/c"
t1=$(date +%s%N)
echo "push into a -> clonable from b: $(((t1 - t0) / 1000000)) ms" >&2
c="$TMP/c"
git -C "$c" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck of the clone from b"
for ref in main feature; do
  [ "$(git -C "$c" rev-parse "origin/$ref")" = "$(git -C "$src" rev-parse "$ref")" ] ||
    fail "origin/$ref from b differs from the pushed $ref"
done
[ "$(git -C "$c" rev-parse v1)" = "$(git -C "$src" rev-parse v1)" ] || fail "tag v1 from b differs"
[ "$(git -C "$c" cat-file -t v1)" = tag ] || fail "tag v1 lost its tag object"
[ "$(git -C "$c" symbolic-ref HEAD)" = refs/heads/main ] || fail "clone from b did not check out main"

# A second push into a reaches b: a fetch from b sees it within seconds.
add_commit "$src" "second push"
want=$(git -C "$src" rev-parse main)
GUTS_DATA="$TMP/a" git -C "$src" push -q guts://alice/pushed main || fail "second push"
fetched() {
  GUTS_DATA="$TMP/b" git -C "$c" fetch -q 2>/dev/null &&
    [ "$(git -C "$c" rev-parse origin/main)" = "$want" ]
}
wait_until "$DEADLINE" "second push fetched from b" fetched
wait_until 30 "a and b agree" repos_equal alice/pushed "$TMP/a" "$TMP/b"

node_stop a
node_stop b
echo "ok"

#!/usr/bin/env bash
# Two nodes started with nothing but their own data dirs find each other over
# multicast on lo (private network namespace) and replicate a real git
# repository: imported into the first while both run, it appears on the
# second within seconds, exports fsck-clean and equal to the source (objects,
# refs, HEAD); a commit imported into the second flows back to the first; a
# new repository created on the second appears on the first; both stop with
# exit 0 on SIGTERM.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

src="$TMP/src"
make_repo "$src" 6

node_start a
node_start b
wait_until 20 "a and b see each other" peers_at_least a 1
wait_until 10 "b sees a" peers_at_least b 1

# An import while the node runs is noticed and replicated.
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
export_check b alice/repo "$src"

# A change on b flows back to a.
add_commit "$src" "second round"
git -C "$src" branch -f topic HEAD~2
expect 0 "$GUTS" --data "$TMP/b" import alice/repo "$src"
wait_until 60 "b's change replicated to a" repos_equal alice/repo "$TMP/a" "$TMP/b"
export_check a alice/repo "$src"

# A repository new on b appears on a.
src2="$TMP/src2"
make_repo "$src2" 2
expect 0 "$GUTS" --data "$TMP/b" import bob/other "$src2"
wait_until 60 "bob/other replicated to a" repos_equal bob/other "$TMP/a" "$TMP/b"
export_check a bob/other "$src2"

grep -q "joined group" "$TMP/a.log" || fail "no 'joined group' line in a's log"
node_stop a
node_stop b
echo "ok"

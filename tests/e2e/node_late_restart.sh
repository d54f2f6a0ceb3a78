#!/usr/bin/env bash
# A node started late catches up with what the others already have; a node
# stopped with SIGTERM (exit 0, LEAVE sent) misses new commits and, restarted
# on the same data dir with a higher incarnation, catches up with them.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

src="$TMP/src"
make_repo "$src" 5
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"

node_start a
node_start b
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"

# Late joiner.
node_start c
wait_until 60 "late node c catches up" repos_equal alice/repo "$TMP/a" "$TMP/c"
export_check c alice/repo "$src"

# Stop b; a drops it because of its LEAVE ("left"), not after expiry.
bid=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node_id"])' "$TMP/b/node/status.json")
node_stop b
[ ! -e "$TMP/b/node/status.json" ] || fail "b left its status.json behind after a clean stop"
peers_exactly() { local n; n=$(node_status_peers "$1") && [ "$n" -eq "$2" ]; }
wait_until 10 "a forgets b after its LEAVE" peers_exactly a 1
grep -q "peer $bid left" "$TMP/a.log" || fail "a did not log b's LEAVE ('peer $bid left')"

# b misses two rounds of changes.
add_commit "$src" "while b was away 1"
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
# (c must have a's update before writing on top of it, or the two updates of
# main are concurrent and one becomes a conflict ref: node_conflict.sh.)
wait_until 60 "c has a's update" repos_equal alice/repo "$TMP/a" "$TMP/c"
add_commit "$src" "while b was away 2"
git -C "$src" tag v2
expect 0 "$GUTS" --data "$TMP/c" import alice/repo "$src"
wait_until 60 "a and c agree" repos_equal alice/repo "$TMP/a" "$TMP/c"

node_restart b
wait_until 60 "restarted b catches up" repos_equal alice/repo "$TMP/a" "$TMP/b" "$TMP/c"
export_check b alice/repo "$src"
inc=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["incarnation"])' "$TMP/b/node/status.json")
[ "$inc" -ge 2 ] || fail "restarted b has incarnation $inc, want >= 2"

for n in a b c; do node_stop $n; done
echo "ok"

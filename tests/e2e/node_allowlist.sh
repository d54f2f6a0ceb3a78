#!/usr/bin/env bash
# --repos: a node takes a repository a peer announces only when OWNER/NAME
# matches one of its patterns. b runs with --repos 'alice/*' --repos 'bob/x?';
# a announces alice/repo, bob/xy and mallory/junk; b replicates the first two
# and never creates the third (not in `guts ls`, nothing on disk), while a,
# with no allowlist, still takes what b has. Bad patterns fail at start.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

expect 2 "$GUTS_NODE" --data "$TMP/x" --repos ''
grep -q -- "--repos" "$TMP/err" || fail "no --repos in the error: $(cat "$TMP/err")"

make_repo "$TMP/src" 3
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$TMP/src"
expect 0 "$GUTS" --data "$TMP/a" import bob/xy "$TMP/src"
expect 0 "$GUTS" --data "$TMP/a" import mallory/junk "$TMP/src"

node_start a
node_start b --repos 'alice/*' --repos 'bob/x?'
wait_until 20 "a and b see each other" peers_at_least b 1
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
wait_until 60 "bob/xy replicated to b" repos_equal bob/xy "$TMP/a" "$TMP/b"

# Many announces later mallory/junk is still absent from b.
heard=$(node_counter b dgrams_in)
wait_until 60 "b heard 10 more datagrams" counter_at_least b dgrams_in $((heard + 10))
[ -z "$(repo_state "$TMP/b" mallory/junk)" ] || fail "b took mallory/junk"
expect 0 "$GUTS" --data "$TMP/b" ls
if grep -q mallory "$TMP/out"; then fail "mallory/junk listed on b"; fi
if find "$TMP/b" -name '*mallory*' | grep -q .; then fail "mallory on b's disk"; fi

# The allowlist is b's own: a still takes a repository new on b.
make_repo "$TMP/src2" 2
expect 0 "$GUTS" --data "$TMP/b" import carol/new "$TMP/src2"
wait_until 60 "carol/new replicated to a" repos_equal carol/new "$TMP/a" "$TMP/b"

node_stop a
node_stop b
echo "ok"

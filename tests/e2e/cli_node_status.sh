#!/usr/bin/env bash
# guts status / peers / rm against real guts-node processes (in a private
# network namespace): the CLI reads the schema the daemon actually writes,
# sees the other node as a peer and the repository's sync state, refuses rm
# while the node runs, and says "no node running" once it has stopped.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

py() { /usr/bin/python3 -c "import json,sys; d = json.load(open(sys.argv[1])); assert $1, d" "$TMP/out"; }
peer_seen() {
  "$GUTS" --data "$TMP/a" peers --json >"$TMP/out" 2>/dev/null && py 'len(d["peers"]) >= 1'
}
in_sync() {
  "$GUTS" --data "$TMP/b" status --json >"$TMP/out" 2>/dev/null &&
    py '[r["sync"] for r in d["repos"] if r["key"] == "alice/repo"] == ["in_sync"]'
}

src="$TMP/src"
make_repo "$src" 3
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
node_start a --listen 127.0.0.1:0
node_start b --listen 127.0.0.1:0
wait_until 20 "a hears from b" peer_seen
wait_until 60 "alice/repo in sync on b" in_sync

expect 0 "$GUTS" --data "$TMP/a" status
grep -q "^guts-node pid ${NODE_PID[a]}, node [0-9a-f]\{32\}, listening on 127.0.0.1:[0-9]*, incarnation [0-9]*\$" "$TMP/out" ||
  fail "status node line: $(cat "$TMP/out")"
grep -Eq '^[0-9a-f]{32} +127\.0\.0\.1:[0-9]+ +multicast +[0-9.]+ s ago$' "$TMP/out" || fail "status peer line: $(cat "$TMP/out")"
expect 0 "$GUTS" --data "$TMP/a" status --json
py 'd["daemon"]["state"] == "running" and d["daemon"]["pid"] == '"${NODE_PID[a]}" || fail "status --json: $(cat "$TMP/out")"
py 'd["daemon"]["node_id"] == d["node"]' || fail "node id differs"
expect 0 "$GUTS" --data "$TMP/a" peers
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "peers: $(cat "$TMP/out")"

expect 1 "$GUTS" --data "$TMP/b" rm alice/repo --yes
one_line_error
grep -q "pid ${NODE_PID[b]}" "$TMP/err" || fail "rm: $(cat "$TMP/err")"

node_stop b
expect 0 "$GUTS" --data "$TMP/b" status
grep -q '^no node running on ' "$TMP/out" || fail "stopped node: $(cat "$TMP/out")"
expect 0 "$GUTS" --data "$TMP/b" rm alice/repo --yes
[ ! -e "$TMP/b/repos/alice/repo" ] || fail "rm left the env"
node_stop a
echo "cli_node_status: ok"

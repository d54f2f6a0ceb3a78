#!/usr/bin/env bash
# guts-node's progress lines: with stderr on a terminal (a pseudo-terminal,
# tests/e2e/lib/pty_run.py) a node that pulls a repository shows a live
# line for the pull (repository, peer, objects of the total the peer
# announced, bytes, rate) among its log lines; with stderr redirected to a
# file (the other node) the log has no carriage return and no escape
# sequence at all. Two nodes in a private network namespace.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v python3 >/dev/null || { echo "no python3: skipped" >&2; exit 77; }

# A repository big enough that the pull takes a few redraws: 1500 blobs of
# 16 KiB that do not compress (24 MB), in 15 commits.
src="$TMP/src.git"
git init -q --bare "$src"
python3 - <<'PY' | git -C "$src" fast-import --quiet
import os, sys
w = sys.stdout.buffer
for c in range(15):
    w.write(b"commit refs/heads/main\ncommitter T <t@guts.invalid> %d +0000\ndata 2\nc\n" % (1700000000 + c))
    for i in range(100):
        data = os.urandom(16384)
        w.write(b"M 100644 inline f%02d/%03d\ndata %d\n" % (c, i, len(data)) + data + b"\n")
PY
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
total=$("$GUTS" --data "$TMP/a" ls --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["objects"])')
[ "$total" -gt 1500 ] || fail "a has $total objects, want more than 1500"

node_start a
# b: stderr (and stdout) a terminal; node_stop stops it through the wrapper.
python3 "$NETNS_LIB_DIR/pty_run.py" "$TMP/b.tty" "$GUTS_NODE" --data "$TMP/b" --iface lo \
  --interval-ms "$NODE_INTERVAL_MS" --log-level info &
NODE_PID[b]=$!
wait_until 120 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
node_stop b
node_stop a

# The terminal got a progress line for the pull, with the announced total.
grep -aEq "pull alice/repo from 127\.0\.0\.1: [0-9]+/$total objects" "$TMP/b.tty" ||
  { tr '\r\033' '|~' <"$TMP/b.tty" | tail -20 >&2; fail "no progress line for the pull on b's terminal"; }
grep -aq $'\033\\[K' "$TMP/b.tty" || fail "b's terminal got no line erase"
# ... and the log lines still (the pull's end is logged as ever).
grep -aq "joined group" "$TMP/b.tty" || fail "b's terminal lost its log lines"
# The redirected log is plain lines: no CR, no ESC.
if grep -aq $'[\r\033]' "$TMP/a.log"; then fail "a's redirected log has escape sequences"; fi
grep -q "joined group" "$TMP/a.log" || fail "a's log is empty"
echo "ok"

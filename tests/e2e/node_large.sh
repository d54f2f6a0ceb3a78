#!/usr/bin/env bash
# Large objects: a repository holding one ~200 MB random blob replicates
# between two nodes while each node's anonymous memory (RssAnon) stays at
# most 64 MB (the blob is read from the store and staged on the receiver
# piece by piece). The receiver is killed with SIGKILL mid-transfer; after
# the restart it asks only for what it had not staged (the log's bytes of
# the sessions after the restart are less than the blob minus what was
# staged, plus slack for the small objects), and the export is fsck-clean
# and equal to the source. GUTS_LARGE_MB changes the size.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

mb=${GUTS_LARGE_MB:-200}
size=$((mb << 20))
src="$TMP/src.git"
git init -q --bare "$src"
blob=$(head -c "$size" /dev/urandom | git -C "$src" hash-object -w --stdin)
tree=$(printf '100644 blob %s\tbig.bin\n' "$blob" | git -C "$src" mktree)
commit=$(git -C "$src" commit-tree -m "a large blob" "$tree")
git -C "$src" update-ref refs/heads/main "$commit"
git -C "$src" symbolic-ref HEAD refs/heads/main
expect 0 "$GUTS" --data "$TMP/a" import big/blob "$src"

asan=0
if ldd "$GUTS_NODE" | grep libasan >/dev/null; then asan=1; fi  # not -q: SIGPIPE under pipefail
anon() { awk '$1 == "RssAnon:" {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
peak_a=0 peak_b=0
sample() {
  local m
  m=$(anon "${NODE_PID[a]}"); [ "${m:-0}" -gt "$peak_a" ] && peak_a=$m
  if [ -n "${NODE_PID[b]:-}" ]; then m=$(anon "${NODE_PID[b]}"); [ "${m:-0}" -gt "$peak_b" ] && peak_b=$m; fi
  return 0
}
staged() {
  "$GUTS" --data "$TMP/b" status --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
for r in json.load(sys.stdin).get("repos", []):
    if r["key"] == "big/blob": print(r["staged_bytes"]); break
else: print(0)'
}
# Bytes the sessions logged in b.log from line $1 on.
logged_bytes() {
  tail -n +"$1" "$TMP/b.log" | sed -n 's/.*sync big\/blob from .*: [0-9]* objects, \([0-9]*\) bytes.*/\1/p' |
    awk '{s += $1} END {print s + 0}'
}

node_start a
wait_until 10 "a up" test -f "$TMP/a/node/status.json"
node_start b
quarter() { sample; [ "$(staged)" -ge $((size / 4)) ]; }
wait_until 300 "b stages a quarter of the blob" quarter
node_kill9 b
held=$(staged)
echo "b killed with $held of $size bytes staged"
[ "$held" -gt 0 ] && [ "$held" -lt "$size" ] || fail "b holds $held bytes staged"
# (A partial store may fail fsck: its tree names the blob not stored yet.)
"$GUTS" --data "$TMP/b" fsck big/blob >"$TMP/out" 2>&1 || true
grep -q 'partly received' "$TMP/out" || fail "fsck does not report the staging: $(cat "$TMP/out")"

from=$(($(wc -l <"$TMP/b.log") + 1))
t0=$SECONDS
node_restart b
done_sync() { sample; repos_equal big/blob "$TMP/a" "$TMP/b"; }
wait_until 300 "restarted b completes" done_sync
logged() { [ "$(logged_bytes "$from")" -gt 0 ]; }
wait_until 10 "b logs its session" logged
after=$(logged_bytes "$from")
echo "after the restart b fetched $after bytes in $((SECONDS - t0)) s (blob $size, staged $held)"
[ "$after" -lt "$size" ] || fail "b fetched $after bytes after the restart: the transfer started over"
[ "$after" -le $((size - held + 65536)) ] || fail "b fetched $after bytes, more than the $((size - held)) it lacked"
[ "$(staged)" -eq 0 ] || fail "staging left behind after the object was stored"
echo "RssAnon peaks: a $peak_a KB, b $peak_b KB"
if [ "$asan" = 0 ]; then
  [ "$peak_a" -le 65536 ] || fail "a's RssAnon reached $peak_a KB"
  [ "$peak_b" -le 65536 ] || fail "b's RssAnon reached $peak_b KB"
fi
expect 0 "$GUTS" --data "$TMP/b" fsck big/blob
grep -q ' 0 faults' "$TMP/out" || fail "fsck: $(cat "$TMP/out")"
export_check b big/blob "$src"
node_stop a
node_stop b
echo "ok"

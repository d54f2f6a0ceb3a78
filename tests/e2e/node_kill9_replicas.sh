#!/usr/bin/env bash
# Replicas flushed off the loop survive SIGKILL (issue 20, item 5). A node
# commits the repositories it creates by pulling without a flush and
# flushes them on other threads (docs/storage.md, "Replicas: commits
# without flushes"); a kill at any moment must lose nothing it committed
# (the kernel's page cache holds it) and leave every env whole. Node a
# holds 30 one-commit repositories; a fresh node b is killed with SIGKILL
# as soon as it has made 3 of them. Before a restart: every env of b opens
# (mdb_stat), every repository b holds is fsck-clean, and none holds less
# than when b died. Restarted, b pulls the rest and all are fsck-clean.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v mdb_stat >/dev/null || { echo "no mdb_stat (lmdb-utils): skipped" >&2; exit 77; }

N=30
make_repo "$TMP/src" 1
for i in $(seq 1 $N); do
  expect 0 "$GUTS" --data "$TMP/a" import "kill/r$i" "$TMP/src"
done
# keys: every repository's "key objects fingerprint refs_digest".
keys() { "$GUTS" --data "$1" status 2>/dev/null | awk '$1 ~ /^kill\// && NF >= 5 {print $1, $2, $4, $5}' | sort; }
want=$(keys "$TMP/a")
[ "$(wc -l <<<"$want")" -eq $N ] || fail "a holds $(wc -l <<<"$want") of $N repositories"
complete() { comm -12 <(keys "$TMP/b") <(echo "$want") | wc -l; }
all_there() { [ "$(keys "$TMP/b")" = "$want" ]; }
fsck_all() {
  local d key
  for d in "$TMP"/b/repos/kill/*; do
    [ -f "$d/data.mdb" ] || continue
    key=kill/$(basename "$d")
    expect 0 "$GUTS" --data "$TMP/b" fsck "$key"
    grep -q ' 0 faults' "$TMP/out" || fail "fsck of $key $1: $(cat "$TMP/out")"
  done
}

node_start a
wait_until 20 "a writes its status" test -f "$TMP/a/node/status.json"
node_start b
# `guts status` takes longer than b's pulls of all 30: watch the directory
# (a repository's env is made when its pull stores its first object).
made() { ls "$TMP/b/repos/kill" 2>/dev/null | wc -l; }
deadline=$((SECONDS + 60))
until [ "$(made)" -ge 3 ]; do
  node_alive b
  [ $SECONDS -lt $deadline ] || fail "b made no repository in 60 s"
  sleep 0.01
done
node_kill9 b
before=$(keys "$TMP/b")
echo "b killed holding $(complete) of $N repositories whole, $(wc -l <<<"$before") in all"
for env in "$TMP"/b/repos/kill/*; do
  mdb_stat -a "$env" >/dev/null 2>&1 || fail "mdb_stat cannot open $env after the kill"
done
fsck_all "after the kill"
# what b held when it died is still there (read by another process)
[ "$(keys "$TMP/b")" = "$before" ] || fail "b's repositories changed after the kill"

node_restart b
wait_until 60 "restarted b holds all $N repositories" all_there
fsck_all "after the restart"
export_check b kill/r1 "$TMP/src"
export_check b kill/r$N "$TMP/src"
node_stop a
node_stop b
echo "ok"

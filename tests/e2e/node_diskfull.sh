#!/usr/bin/env bash
# Disk full: c's data dir is a 24 MiB tmpfs (private user+mount namespace).
# c replicates small/repo from a, then a filler file leaves c ~256 KiB and
# a imports big/repo (6 MiB of incompressible blobs). c must log the full
# store once, store nothing broken (mdb_stat opens every env, guts fsck is
# clean), keep serving: d, started after a stops, gets small/repo from c.
# With the filler removed c takes big/repo from a again (one "writable
# again" line) and converges.
set -euo pipefail
NETNS_MOUNT=1
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"
command -v mdb_stat >/dev/null || { echo "no mdb_stat: skipped" >&2; exit 77; }

netns_tmpfs "$TMP/c" $((24 << 20))

make_repo "$TMP/small" 3
git init -q "$TMP/big"
for i in $(seq 1 12); do
  head -c $((512 << 10)) /dev/urandom >"$TMP/big/b$i.bin"
  git -C "$TMP/big" add -A
  git -C "$TMP/big" commit -q -m "big $i"
done
expect 0 "$GUTS" --data "$TMP/a" import small/repo "$TMP/small"

node_start a
NODE_LOG_LEVEL=debug node_start c # a full store's failed pulls are debug lines
wait_until 30 "c sees a" peers_at_least c 1
wait_until 60 "small/repo on c" repos_equal small/repo "$TMP/a" "$TMP/c"

# Leave c 256 KiB: less than one frame of big/repo's records.
avail=$(df -B1 --output=avail "$TMP/c" | tail -1)
[ "$avail" -gt $((1 << 20)) ] || fail "tmpfs has only $avail bytes before the filler"
head -c $((avail - (256 << 10))) /dev/zero >"$TMP/c/filler" || fail "filler"
expect 0 "$GUTS" --data "$TMP/a" import big/repo "$TMP/big"

full_lines() { grep -c "store full" "$TMP/c.log" || true; }
full_logged() { [ "$(full_lines)" -ge 1 ]; }
wait_until 60 "c logs the full store" full_logged
# c's next pull of big/repo (its probe, every 10 s) fails again, quietly
# (status.json is not rewritten while the disk is full: the log tells).
failed_pulls() { grep -c "sync big/repo from .* failed" "$TMP/c.log" || true; }
failed=$(failed_pulls)
failed_again() { [ "$(failed_pulls)" -gt "$failed" ]; }
wait_until 60 "c's next pull of big/repo fails" failed_again
[ "$(full_lines)" -eq 1 ] || { grep "store full" "$TMP/c.log" >&2; fail "store full logged $(full_lines) times, want 1"; }

# d can reach only c; c keeps serving small/repo, and holds nothing of
# big/repo that it cannot account for.
node_stop a
node_start d
wait_until 60 "small/repo from c to d" repos_equal small/repo "$TMP/c" "$TMP/d"
for env in "$TMP"/c/repos/*/*; do
  mdb_stat "$env" >/dev/null || fail "mdb_stat cannot open $env"
done
expect 0 "$GUTS" --data "$TMP/c" fsck small/repo
if [ -d "$TMP/c/repos/big/repo" ]; then
  expect 0 "$GUTS" --data "$TMP/c" fsck big/repo
fi
if grep -q "store writable again" "$TMP/c.log"; then fail "c says writable while still full"; fi

# Space returns: c takes big/repo from a (restarted) and says so once.
rm -f "$TMP/c/filler"
node_stop d
node_restart a
wait_until 90 "big/repo on c after space returned" repos_equal big/repo "$TMP/a" "$TMP/c"
[ "$(grep -c "store writable again" "$TMP/c.log")" -eq 1 ] || fail "writable again not logged once"
expect 0 "$GUTS" --data "$TMP/c" fsck big/repo
export_check c big/repo "$TMP/big"
node_stop a
node_stop c
echo "ok"

#!/usr/bin/env bash
# A damaged repository environment never takes a node down, and heals from
# a peer (issue 13, item 2; issue 20, item 1). Nodes a and b replicate two
# repositories; b is stopped, alice/repo's data.mdb on b is damaged
# (damage_env: truncated to half, emptied, random pages, every leaf page
# header flipped), and b restarted. Then, for each kind:
#   - b stays up (it used to die of SIGBUS ~100 ms after start, or abort in
#     mdb_cursor_next when a peer pulled);
#   - b logs the damage once, naming the repository and the cause;
#   - the damaged copy is kept under b's DATA/damaged/alice/, never deleted;
#   - status.json and `guts status` list it;
#   - alice/repo comes back from a, equal and fsck-clean;
#   - bob/other keeps replicating meanwhile (a commit made on a reaches b).
# Runs in a private network namespace; processes stopped by pid.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

src="$TMP/src"
make_repo "$src" 30
src2="$TMP/src2"
make_repo "$src2" 3
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
expect 0 "$GUTS" --data "$TMP/a" import bob/other "$src2"

node_start a
node_start b
wait_until 60 "alice/repo replicated to b" repos_equal alice/repo "$TMP/a" "$TMP/b"
wait_until 60 "bob/other replicated to b" repos_equal bob/other "$TMP/a" "$TMP/b"

round=0
for kind in truncate empty random leafflip; do
  round=$((round + 1))
  node_stop b
  damage_env "$TMP/b/repos/alice/repo" "$kind"
  : >"$TMP/b.log"
  node_restart b
  wait_until 30 "b notices the damage ($kind)" grep -q "repository alice/repo is damaged" "$TMP/b.log"
  wait_until 60 "alice/repo healed on b ($kind)" repos_equal alice/repo "$TMP/a" "$TMP/b"
  # A change to the healthy repository still flows while b heals.
  add_commit "$src2" "round $round"
  expect 0 "$GUTS" --data "$TMP/a" import bob/other "$src2"
  wait_until 60 "bob/other still replicates to b ($kind)" repos_equal bob/other "$TMP/a" "$TMP/b"
  node_alive b
  [ "$(grep -c "repository alice/repo is damaged" "$TMP/b.log")" -eq 1 ] ||
    fail "$kind: the damage is not logged exactly once: $(grep damaged "$TMP/b.log")"
  n=$(find "$TMP/b/damaged/alice" -maxdepth 1 -name 'repo.*' | wc -l)
  [ "$n" -eq "$round" ] || fail "$kind: $n damaged copies kept under b/damaged/alice, want $round"
  wait_until 10 "status.json lists the damage ($kind)" grep -q '"cause"' "$TMP/b/node/status.json"
  expect 0 "$GUTS" --data "$TMP/b" status
  grep -q "^damaged: alice/repo set aside as $TMP/b/damaged/alice/repo\." "$TMP/out" ||
    fail "$kind: guts status does not show the damage: $(cat "$TMP/out")"
  expect 0 "$GUTS" --data "$TMP/b" fsck alice/repo
  grep -q ' 0 faults' "$TMP/out" || fail "$kind: fsck after healing: $(cat "$TMP/out")"
  echo "$kind: b stayed up, set the copy aside and healed it from a"
done
export_check b alice/repo "$src"
node_stop a
node_stop b
echo "ok"

#!/usr/bin/env bash
# A damaged stored object is not served forever (issue 20, item 2; issue 16:
# the server no longer checks what it sends, the receiver tells it).
# a and b import the same repository; one blob's record in a's env is
# damaged (the env stays valid). c, empty, first has only a as a source: c
# finds the blob failing its hash, once, and names it back to a (DAMAGED);
# a checks it, logs it once, counts it and drops it; c gets everything
# else. Then b starts: c completes, and a fetches a good copy back
# (fsck-clean again). Without the report a would keep its damaged copy.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

src="$TMP/src"
make_repo "$src" 3
marker='damage-me 0123456789'
(cd "$src" && printf '%s\n' "$marker" >bad && git add bad && git commit -q -m bad)
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
expect 0 "$GUTS" --data "$TMP/b" import alice/repo "$src"
damage_record "$TMP/a/repos/alice/repo" "$marker"
expect 1 "$GUTS" --data "$TMP/a" fsck alice/repo

node_start a
node_start c
wait_until 30 "a found the damaged object" counter_at_least a objects_damaged 1
[ "$(node_counter a damage_reports)" -ge 1 ] || fail "a counted no DAMAGED report"
wait_until 10 "c counted the bad object" counter_at_least c bad_objects 1
node_start b
wait_until 90 "alice/repo equal on a, b and c" repos_equal alice/repo "$TMP/a" "$TMP/b" "$TMP/c"
export_check c alice/repo "$src"
expect 0 "$GUTS" --data "$TMP/a" fsck alice/repo
[ "$(grep -c 'is damaged (fails its hash' "$TMP/a.log")" -eq 1 ] ||
  fail "a did not log the damaged object exactly once: $(grep -c 'is damaged' "$TMP/a.log")"
"$GUTS" --data "$TMP/a" status >"$TMP/st" 2>&1 || true
grep -q '^damaged objects: 1 failed their hash' "$TMP/st" || fail "guts status does not show it: $(cat "$TMP/st")"
[ "$(node_counter c bad_objects)" -eq 1 ] ||
  fail "c got the damaged object more than once: $(node_counter c bad_objects)"
node_stop a
node_stop b
node_stop c
echo "ok"

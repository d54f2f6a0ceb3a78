#!/usr/bin/env bash
# --on-event hooks. a and b move main apart while alone, then meet: the
# conflict fires the hook exactly once on each node, with GUTS_EVENT,
# GUTS_REPO, GUTS_REF, GUTS_OLD (the kept commit), GUTS_NEW (the winner)
# and the same record as a JSON line on stdin; peer_joined, repo_added and
# ref_updated fire too. A second hook that hangs is killed after its
# timeout and one that fails is logged; neither holds up replication: a
# repository imported later still reaches both nodes meanwhile.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

key=alice/repo
base="$TMP/base"
make_repo "$base" 3
cat >"$TMP/hook" <<'EOF'
#!/bin/sh
# one line of variables, then the JSON line from stdin
printf '%s|%s|%s|%s|%s|%s\n' "$GUTS_EVENT" "$GUTS_REPO" "$GUTS_REF" "$GUTS_OLD" "$GUTS_NEW" "$GUTS_PEER" >>"$1"
cat >>"$1.json"
EOF
printf '#!/bin/sh\nexec sleep 600\n' >"$TMP/hang"
printf '#!/bin/sh\nexit 3\n' >"$TMP/fail"
chmod +x "$TMP/hook" "$TMP/hang" "$TMP/fail"

diverge() { # diverge MIRROR TEXT: one commit on main changing side.txt
  local w="$TMP/work.$RANDOM"
  git clone -q "$base" "$w"
  (cd "$w" && printf '%s\n' "$2" >side.txt && git add side.txt && git commit -q -m "$2" \
     && git push -q -f "$1" HEAD:refs/heads/main)
  git -C "$1" rev-parse refs/heads/main
}
git clone -q --mirror "$base" "$TMP/srcA"
git clone -q --mirror "$base" "$TMP/srcB"
ca=$(diverge "$TMP/srcA" "side A")
cb=$(diverge "$TMP/srcB" "side B")
for s in a b; do expect 0 "$GUTS" --data "$TMP/$s" import $key "$base"; done
expect 0 "$GUTS" --data "$TMP/a" import $key "$TMP/srcA"
expect 0 "$GUTS" --data "$TMP/b" import $key "$TMP/srcB"

for n in a b; do
  node_start $n --on-event "$TMP/hook $TMP/events.$n" --on-event "$TMP/hang" \
    --on-event "$TMP/fail"
done
wait_until 60 "a and b converge" repos_equal $key "$TMP/a" "$TMP/b"
conflict_once() { [ "$(grep -c '^conflict|' "$TMP/events.$1" 2>/dev/null)" = 1 ]; }
wait_until 30 "the conflict hook ran on a and on b" eval 'conflict_once a && conflict_once b'

winner=$("$GUTS" --data "$TMP/a" conflicts --json $key | python3 -c '
import json, sys; print(json.load(sys.stdin)[0]["winner"]["commit"])')
kept=$ca; [ "$winner" = "$ca" ] && kept=$cb
for n in a b; do
  line=$(grep '^conflict|' "$TMP/events.$n")
  [ "$line" = "conflict|$key|refs/heads/main|$kept|$winner|$(echo "$line" | cut -d'|' -f6)" ] \
    || fail "$n's conflict variables: $line (kept $kept, winner $winner)"
  grep -q '^peer_joined|' "$TMP/events.$n" || fail "$n: no peer_joined"
  python3 - "$TMP/events.$n.json" "$kept" "$winner" <<'EOF' || fail "$n's JSON lines"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
c = [e for e in evs if e["event"] == "conflict"]
assert len(c) == 1, evs
c = c[0]
assert c["repo"] == "alice/repo" and c["ref"] == "refs/heads/main", c
assert c["old"] == sys.argv[2] and c["new"] == sys.argv[3], c
assert c["detail"].startswith("refs/guts/conflicts/") and c["detail"].endswith("/heads/main"), c
assert len(c["node"]) == 32 and c["time_ms"] > 0, c
EOF
done
# The loser's node saw main move to the winner: a ref_updated from kept to winner.
grep -q "^ref_updated|$key|refs/heads/main|$kept|$winner|" "$TMP/events.a" "$TMP/events.b" \
  || fail "no ref_updated of main from the kept commit to the winner"

# The hanging hook is killed on time and counted; the failing one logged.
hooks_settled() {
  python3 - "$TMP/$1/node/status.json" <<'EOF'
import json, sys
h = json.load(open(sys.argv[1]))["hooks"]
assert h[1]["timeouts"] >= 1 and h[2]["failed"] >= 1 and h[0]["failed"] == 0, h
EOF
}
wait_until 40 "a's hanging hook timed out" hooks_settled a
grep -q "on-event $TMP/hang failed: killed after 10 s" "$TMP/a.log" || fail "no timeout line"
grep -q "on-event $TMP/fail failed: exit 3" "$TMP/a.log" || fail "no failure line"

# Replication went on regardless: a new repository on a reaches b, and b's
# hook says repo_added.
make_repo "$TMP/two" 2
expect 0 "$GUTS" --data "$TMP/a" import bob/two "$TMP/two"
wait_until 60 "bob/two on b" repos_equal bob/two "$TMP/a" "$TMP/b"
wait_until 30 "b's repo_added hook" grep -q "^repo_added|bob/two|" "$TMP/events.b"
for n in a b; do node_stop $n; done
echo "ok"

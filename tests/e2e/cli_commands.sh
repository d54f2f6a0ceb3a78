#!/usr/bin/env bash
# The listing and housekeeping commands: ls, refs, log, rm, status and peers
# on a small repository built here, with a running node faked by a
# hand-written DATA/node/status.json (its pid is this shell, so it counts as
# alive; no socket is opened and no network namespace is needed). Every
# --json output is valid JSON; every command has --help; usage errors exit 2
# with one line.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

json_ok() { /usr/bin/python3 -m json.tool "$TMP/out" >/dev/null || fail "not JSON: $(cat "$TMP/out")"; }
# py EXPR: evaluate a Python assertion on the JSON in $TMP/out (as d).
py() { /usr/bin/python3 -c "import json,sys; d = json.load(open(sys.argv[1])); assert $1, d" "$TMP/out" || fail "$1"; }

# --- A repository: three commits on main, a merge-free topic, an annotated tag.
src="$TMP/src"
git init -q "$src"
for i in 1 2 3; do
  echo "$i" >"$src/f"
  git -C "$src" add f
  GIT_AUTHOR_DATE="2024-01-0${i}T12:00:00+0200" git -C "$src" commit -qm "commit $i"
done
git -C "$src" tag -a v1 -m "release 1" HEAD~1
git -C "$src" checkout -qb topic
echo t >"$src/g"
git -C "$src" add g
git -C "$src" commit -qm "topic work"
git -C "$src" checkout -q main
expect 0 "$GUTS" import alice/repo "$src"
objs=$(git_objects "$src" | wc -l)

# --- help for every command; usage errors.
expect 0 "$GUTS" --help
for c in import export ls refs log rm status peers fsck; do
  grep -q "^  $c " "$TMP/out" || fail "guts --help does not list $c"
done
for c in import export ls refs log rm status peers fsck; do
  expect 0 "$GUTS" "$c" --help
  grep -q "^usage: guts $c" "$TMP/out" || fail "$c --help"
  expect 0 "$GUTS" help "$c"
  grep -q "^usage: guts $c" "$TMP/out" || fail "help $c"
done
while IFS= read -r args; do
  # shellcheck disable=SC2086
  expect 2 "$GUTS" $args
  one_line_error
done <<'TABLE'
ls extra
ls --yaml
refs
refs a/b c
refs --bogus a/b
refs bad
log
log a/b HEAD extra
log a/b -n 0
log a/b -n x
log a/b -n
log a/b --oneline
rm
rm a/b c
rm a/b --now
rm ../b
peers extra
peers --yaml
help nosuch
TABLE

# --- ls
expect 0 "$GUTS" ls
grep -Eq "^alice/repo +$objs +4$" "$TMP/out" || fail "ls: $(cat "$TMP/out")"
expect 0 "$GUTS" ls --json
json_ok
py 'd == [{"key": "alice/repo", "objects": '"$objs"', "refs": 4}]'

# --- refs: HEAD is symbolic; ids are git's; tombstones only with --all.
expect 0 "$GUTS" refs alice/repo
grep -Eq '^ref: refs/heads/main +1 [0-9a-f]{32} HEAD$' "$TMP/out" || fail "refs HEAD: $(cat "$TMP/out")"
grep -q "^$(git -C "$src" rev-parse main) .* refs/heads/main\$" "$TMP/out" || fail "refs main"
grep -q "^$(git -C "$src" rev-parse v1) .* refs/tags/v1\$" "$TMP/out" || fail "refs v1"
expect 0 "$GUTS" refs --json alice/repo
json_ok
py '[r["symref"] for r in d if r["name"] == "HEAD"] == ["refs/heads/main"]'
py 'all(len(r["writer"]) == 32 and r["clock"] >= 1 and not r["deleted"] for r in d)'
git -C "$src" branch -qD topic
expect 0 "$GUTS" import alice/repo "$src"
expect 0 "$GUTS" refs alice/repo
grep -q 'refs/heads/topic' "$TMP/out" && fail "tombstone listed without --all"
expect 0 "$GUTS" refs alice/repo --all
grep -Eq '^\(deleted\) +2 [0-9a-f]{32} refs/heads/topic$' "$TMP/out" || fail "refs --all: $(cat "$TMP/out")"
expect 0 "$GUTS" refs alice/repo --all --json
json_ok
py '[r["id"] for r in d if r["name"] == "refs/heads/topic" and r["deleted"]] == [None]'

# --- log: newest first, author date in the author's zone, -n, tags peeled.
expect 0 "$GUTS" log alice/repo
[ "$(wc -l <"$TMP/out")" -eq 3 ] || fail "log: $(cat "$TMP/out")"
head -1 "$TMP/out" | grep -Eq "^$(git -C "$src" rev-parse --short=12 main) 2024-01-03 12:00 \+0200 Guts Test  commit 3\$" ||
  fail "log line: $(head -1 "$TMP/out")"
expect 0 "$GUTS" log alice/repo -n 1
[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "log -n 1"
expect 0 "$GUTS" log alice/repo v1
head -1 "$TMP/out" | grep -q '  commit 2$' || fail "log v1: $(cat "$TMP/out")"
expect 0 "$GUTS" log alice/repo refs/heads/main -n2
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "log -n2"
expect 0 "$GUTS" log alice/repo "$(git -C "$src" rev-parse main~2)"
[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "log by id"
expect 1 "$GUTS" log alice/repo topic
one_line_error
grep -q '"topic"' "$TMP/err" || fail "missing ref not named"
expect 1 "$GUTS" log no/such
one_line_error

# --- status and peers, no node.
expect 0 "$GUTS" status
grep -q "^no node running on $GUTS_DATA\$" "$TMP/out" || fail "status without node: $(cat "$TMP/out")"
expect 0 "$GUTS" status --json
json_ok
py 'd["daemon"]["state"] == "not_running" and d["repos"][0]["sync"] is None'
expect 0 "$GUTS" peers
grep -q "^no node running" "$TMP/out" || fail "peers without node"
expect 0 "$GUTS" peers --json
json_ok
py 'd == {"daemon": "not_running", "peers": []}'

# --- A running node, faked: this shell's pid, written just now. One peer's
# address carries an escape sequence, which must never reach the terminal.
status="$GUTS_DATA/node/status.json"
write_status() { # PID
  cat >"$status" <<EOF
{
  "version": 1,
  "pid": $1,
  "node_id": "0123456789abcdef0123456789abcdef",
  "incarnation": 7,
  "updated_unix_ms": 1700000000000,
  "uptime_ms": 5000,
  "listen": "10.9.0.1:7172",
  "group": "239.255.71.71:7171",
  "interval_ms": 1000,
  "sessions": {"pulls": 0, "serves": 1},
  "peers": [
    {"id": "00112233445566778899aabbccddeeff", "address": "10.9.0.2:7173", "port": 7173, "incarnation": 1, "last_heard_ms_ago": 420, "repos": 1, "via": "unicast"},
    {"id": "ffeeddccbbaa99887766554433221100", "address": "10.9.0.3\u001b[2J", "port": 7174, "incarnation": 2, "last_heard_ms_ago": 75000, "repos": 0}
  ],
  "repos": [
    {"key": "alice/repo", "objects": $objs, "fingerprint": "00000000000000000000000000000000", "state": "pulling"}
  ],
  "counters": {"dgrams_in": 5, "tcp_open": 1}
}
EOF
}
write_status $$
expect 0 "$GUTS" status
grep -q "^guts-node pid $$, node 0123456789abcdef0123456789abcdef, listening on 10.9.0.1:7172, incarnation 7\$" "$TMP/out" ||
  fail "status node line: $(cat "$TMP/out")"
grep -Eq '^00112233445566778899aabbccddeeff +10.9.0.2:7173 +unicast +0.4 s ago$' "$TMP/out" || fail "status peer: $(cat "$TMP/out")"
grep -Eq '^alice/repo +[0-9]+ +pulling$' "$TMP/out" || fail "status sync state: $(cat "$TMP/out")"
grep -q $'\e' "$TMP/out" && fail "an escape sequence reached the terminal"
expect 0 "$GUTS" status --json
json_ok
py 'd["daemon"]["state"] == "running" and d["daemon"]["pid"] == '"$$"' and d["daemon"]["listen"] == "10.9.0.1:7172"'
py 'len(d["daemon"]["peers"]) == 2 and d["daemon"]["repos"][0]["state"] == "pulling" and d["repos"][0]["sync"] == "pulling"'
expect 0 "$GUTS" peers
[ "$(wc -l <"$TMP/out")" -eq 3 ] || fail "peers: $(cat "$TMP/out")"
grep -Eq '^ffeeddccbbaa99887766554433221100 +10.9.0.3\?\[2J:7174 +\? +1 min ago$' "$TMP/out" || fail "peers: $(cat "$TMP/out")"
expect 0 "$GUTS" peers --json
json_ok
py 'd["daemon"] == "running" and [p["port"] for p in d["peers"]] == [7173, 7174]'
py '[p["via"] for p in d["peers"]] == ["unicast", None]'

# rm refuses while the node runs; --force overrides.
expect 1 "$GUTS" rm alice/repo --yes
one_line_error
grep -q "pid $$" "$TMP/err" || fail "rm refusal names no pid: $(cat "$TMP/err")"
grep -q -- '--force' "$TMP/err" || fail "rm refusal names no way out: $(cat "$TMP/err")"
[ -d "$GUTS_DATA/repos/alice/repo" ] || fail "rm removed despite the running node"

# Stale: the pid lives but the file is old.
touch -d '1 minute ago' "$status"
expect 0 "$GUTS" status
grep -q "^guts-node pid $$ is not responding" "$TMP/out" || fail "stale: $(cat "$TMP/out")"
expect 0 "$GUTS" status --json
json_ok
py 'd["daemon"]["state"] == "stale" and d["repos"][0]["sync"] is None'

# Dead: the pid is gone (a node killed with SIGKILL leaves its file).
sleep 0 &
dead=$!
wait "$dead"
write_status "$dead"
expect 0 "$GUTS" status
grep -q "^no node running on .*pid $dead, which is gone" "$TMP/out" || fail "dead: $(cat "$TMP/out")"
expect 0 "$GUTS" peers --json
json_ok
py 'd == {"daemon": "not_running", "peers": []}'

# Malformed, hostile and oversized status files: one line, exit 1, and the
# repositories are still listed.
while IFS= read -r bad; do
  printf '%s' "$bad" >"$status"
  expect 1 "$GUTS" status
  one_line_error
  grep -q "status.json" "$TMP/err" || fail "status.json not named: $(cat "$TMP/err")"
  grep -q '^alice/repo ' "$TMP/out" || fail "repositories not listed beside a bad status file"
  expect 1 "$GUTS" status --json
  json_ok
  expect 1 "$GUTS" peers
  one_line_error
done <<'TABLE'
{"pid":
{"pid": 1}
{"pid": -5}
{"pid": 99999999999999999999999}
{"pid": "12"}
[1, 2]
{"version": 2, "pid": 12}
{"pid": 12} trailing
{"pid": 12,}
{"a": "\x"}
[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
TABLE
head -c $((4 * 1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$status"
expect 1 "$GUTS" peers
one_line_error
grep -q 'limit' "$TMP/err" || fail "oversized status.json: $(cat "$TMP/err")"
rm -f "$status"
ln -s /dev/zero "$status"
expect 1 "$GUTS" peers
one_line_error
rm -f "$status"

# --- rm: needs --yes when not asking a terminal; then the env is gone.
expect 2 "$GUTS" rm alice/repo </dev/null
one_line_error
[ -d "$GUTS_DATA/repos/alice/repo" ] || fail "rm without --yes removed"
expect 0 "$GUTS" rm alice/repo --yes
grep -q "^removed alice/repo: $objs objects" "$TMP/out" || fail "rm: $(cat "$TMP/out")"
[ ! -e "$GUTS_DATA/repos/alice/repo" ] || fail "env still on disk"
expect 0 "$GUTS" ls --json
py 'd == []'
expect 1 "$GUTS" rm alice/repo --yes
one_line_error
# Importing again after rm starts afresh.
expect 0 "$GUTS" import alice/repo "$src"
expect 0 "$GUTS" refs alice/repo --all
grep -q 'refs/heads/topic' "$TMP/out" && fail "a removed repository's tombstones came back"

# --- log of a merge: every commit reachable, each once, newest committer
# date first (git log's order when dates differ), bounded by -n.
m="$TMP/merge"
git init -q "$m"
c=0
commit() { # BRANCH MESSAGE
  c=$((c + 1))
  git -C "$m" checkout -q "$1"
  echo "$2" >"$m/$2"
  git -C "$m" add "$2"
  GIT_COMMITTER_DATE="2024-02-01T00:00:$(printf %02d $c)Z" git -C "$m" commit -qm "$2"
}
git -C "$m" commit -q --allow-empty -m root
git -C "$m" branch side
commit main m1; commit side s1; commit main m2; commit side s2
git -C "$m" checkout -q main
GIT_COMMITTER_DATE="2024-02-01T00:01:00Z" git -C "$m" merge -q --no-ff -m merge side
expect 0 "$GUTS" import alice/merge "$m"
expect 0 "$GUTS" log alice/merge
cut -c1-12 "$TMP/out" >"$TMP/ours"
git -C "$m" log --format=%H | cut -c1-12 >"$TMP/theirs"
diff "$TMP/theirs" "$TMP/ours" >&2 || fail "log order differs from git log"
[ "$(wc -l <"$TMP/out")" -eq 6 ] || fail "log of a merge: $(cat "$TMP/out")"
expect 0 "$GUTS" log alice/merge -n 3
[ "$(cut -c1-12 "$TMP/out")" = "$(head -3 "$TMP/theirs")" ] || fail "log -n 3 of a merge"

# A shallow clone's oldest commit names a parent the store lacks: the lines
# that are true are printed, then one error line, exit 1.
git clone -q --depth 1 "file://$src" "$TMP/shallow"
expect 0 "$GUTS" import alice/shallow "$TMP/shallow"
expect 1 "$GUTS" log alice/shallow
one_line_error
grep -q 'not stored' "$TMP/err" || fail "missing parent: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/out")" -eq 1 ] || fail "shallow log: $(cat "$TMP/out")"
echo "cli_commands: ok"

#!/usr/bin/env bash
# The smaller honest-error cases of issue 13 (item 8), each one line:
#   - a reader that stops reading (`guts refs K | head -1`) is not an error:
#     exit 0, nothing on stderr, for output far beyond a pipe's buffer;
#   - `guts ls --data D` says --data is a global option that goes before
#     the command, not just "unknown option";
#   - `guts-node --peer nosuchhost.invalid:7172` says the name did not
#     resolve, with the resolver's text, not "expected HOST:PORT";
#   - the README's commands use one data dir throughout (the node, guts and
#     git-remote-guts must meet in the same store).
# In a private network namespace: the resolver must not reach the network.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

# ~3000 refs: `guts refs` writes ~250 KB, far more than a pipe holds, so it
# is still writing when head exits.
git init -q "$TMP/src"
git -C "$TMP/src" commit -q --allow-empty -m one
seq 1 3000 | sed 's|.*|create refs/heads/branch-with-a-long-name-&/x HEAD|' | git -C "$TMP/src" update-ref --stdin
expect 0 "$GUTS" import a/b "$TMP/src"
for args in "refs a/b" "refs a/b --json" "refs a/b --all"; do
  rc=0
  # shellcheck disable=SC2086
  "$GUTS" $args 2>"$TMP/err" | head -1 >/dev/null || rc=$?
  [ $rc -eq 0 ] || fail "guts $args | head -1: exit $rc: $(cat "$TMP/err")"
  [ ! -s "$TMP/err" ] || fail "guts $args | head -1 wrote: $(cat "$TMP/err")"
done
# a real write failure is still one
rc=0
"$GUTS" refs a/b >/dev/full 2>"$TMP/err" || rc=$?
[ $rc -eq 1 ] && grep -q "^guts: refs: writing output failed: No space left on device$" "$TMP/err" ||
  fail "write to /dev/full: exit $rc: $(cat "$TMP/err")"

# --data after the command
for args in "ls --data $TMP/d" "status --data=$TMP/d" "refs a/b --data $TMP/d" "fsck --data $TMP/d a/b"; do
  # shellcheck disable=SC2086
  expect 2 "$GUTS" $args
  one_line_error
  grep -q '"--data" is a global option: it goes before the command (guts --data DIR' "$TMP/err" ||
    fail "guts $args: $(cat "$TMP/err")"
done

# a peer whose name does not resolve
rc=0
"$GUTS_NODE" --data "$TMP/n" --iface lo --peer nosuchhost.invalid:7172 >/dev/null 2>"$TMP/err" || rc=$?
[ $rc -eq 2 ] || fail "--peer nosuchhost.invalid: exit $rc: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "--peer: not one line: $(cat "$TMP/err")"
grep -q "^guts-node: --peer: cannot resolve the host of 'nosuchhost.invalid:7172': ..*" "$TMP/err" ||
  fail "--peer nosuchhost.invalid: $(cat "$TMP/err")"
[ ! -e "$TMP/n" ] || fail "a usage error created the data dir"
expect 2 "$GUTS_NODE" --peer nosuchhost
grep -q "expected HOST:PORT" "$TMP/err" || fail "--peer without a port: $(cat "$TMP/err")"

# README: every command in its code blocks uses the one data dir
readme="$(dirname "$0")/../../README.md"
if [ -f "$readme" ]; then
  awk '/^```/ {f = !f; next} f' "$readme" | grep -E '(guts-node|build/guts|git (clone|push))' >"$TMP/cmds"
  [ -s "$TMP/cmds" ] || fail "no commands found in the README"
  if grep -E -- '--data' "$TMP/cmds"; then fail "the README's commands use more than one data dir"; fi
fi
echo "ok"

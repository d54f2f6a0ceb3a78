#!/usr/bin/env bash
# A damaged repository environment never kills a command (issue 13, item 2;
# issue 20, item 1). For each kind of damage (damage_env in lib.bash) every
# command that reads the repository, fsck, refs, export, log and status,
# exits 1 with one line on stderr, never by a signal, and rm removes it; fsck names the damage
# ("environment damaged" and its cause) in text and in --json, and export
# refuses before writing anything. Damage confined to 64 KiB in the middle
# of the file (middle) may hit pages LMDB reads, stored values only, or
# free pages: every command must then succeed or fail with one line, never
# die.
#
# A release build dies by the signal itself; the sanitizers would turn
# SIGSEGV and SIGBUS into a report and exit 1, hiding the difference: they
# are told to leave those signals alone, as a release build does.
set -euo pipefail
. "$(dirname "$0")/lib.bash"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}handle_segv=0:handle_sigbus=0:handle_abort=0"

src="$TMP/src"
git init -q "$src"
(cd "$src" && for i in $(seq 1 40); do
   seq 1 $((i * 200)) >"f$((i % 7)).txt"; head -c 3000 /dev/urandom >"r$i.bin"
   git add -A && git commit -q -m "c $i"; git tag "t$i"; done)
expect 0 "$GUTS" --data "$TMP/good" import a/r "$src"
expect 0 "$GUTS" --data "$TMP/good" import b/other "$src"

# run_cmd WANT NAME ARGS...: exit status WANT ("any" for 0 or 1), stderr at
# most one line (exactly one when the status is 1), never a signal.
run_cmd() {
  local want=$1 got=0; shift
  "$GUTS" --data "$TMP/d" "$@" >"$TMP/out" 2>"$TMP/err" || got=$?
  [ "$got" -lt 128 ] || fail "guts $* died by signal $((got - 128)): $(cat "$TMP/err")"
  if [ "$want" = any ]; then
    [ "$got" -le 1 ] || fail "guts $* exited $got: $(cat "$TMP/err")"
  else
    [ "$got" -eq "$want" ] || { cat "$TMP/out" "$TMP/err" >&2; fail "guts $*: exit $got, want $want"; }
  fi
  if [ "$got" -eq 1 ]; then one_line_error; else [ "$(wc -l <"$TMP/err")" -le 1 ] || fail "guts $*: stderr: $(cat "$TMP/err")"; fi
}

for kind in truncate empty random leafflip middle; do
  rm -rf "$TMP/d" "$TMP/x"
  cp -a "$TMP/good" "$TMP/d"
  damage_env "$TMP/d/repos/a/r" "$kind"
  if [ "$kind" = middle ]; then
    # The bytes may land in pages LMDB reads (environment damaged), only in
    # stored values (object records: faults), or in free pages (no harm).
    run_cmd any fsck a/r
    run_cmd any export a/r "$TMP/x"
  else
    run_cmd 1 fsck a/r
    grep -q "environment damaged: ." "$TMP/err" || fail "$kind: fsck does not name the damage: $(cat "$TMP/err")"
    run_cmd 1 fsck --json a/r
    /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["repo"]=="a/r" and d["damaged"], d' "$TMP/out" ||
      fail "$kind: fsck --json: $(cat "$TMP/out")"
    run_cmd 1 export a/r "$TMP/x"
    [ ! -e "$TMP/x/objects" ] || fail "$kind: export of a damaged repository wrote $TMP/x"
  fi
  if [ "$kind" = middle ]; then want=any; else want=1; fi
  run_cmd "$want" refs a/r
  run_cmd "$want" log a/r
  run_cmd "$want" status
  # The healthy repository beside it is untouched.
  expect 0 "$GUTS" --data "$TMP/d" fsck b/other
  expect 0 "$GUTS" --data "$TMP/d" refs b/other
  # And the damaged one can be removed without being opened.
  expect 0 "$GUTS" --data "$TMP/d" rm a/r --yes
  [ ! -e "$TMP/d/repos/a/r" ] || fail "$kind: rm left $TMP/d/repos/a/r"
  echo "$kind: every command exits with one line"
done

# What is not damage: the healthy copy passes, and fsck --json says so.
expect 0 "$GUTS" --data "$TMP/good" fsck --json a/r
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["faults"]==0 and "damaged" not in d, d' "$TMP/out" ||
  fail "fsck --json of a healthy repository: $(cat "$TMP/out")"
echo "ok"

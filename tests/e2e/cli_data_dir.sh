#!/usr/bin/env bash
# The data dir, as a newcomer meets it (issue 13, items 5 and 6):
#   - read-only commands (ls, status, peers, refs, log, fsck, export, rm) and
#     the helper's clone never create a data dir: absent, they say it does
#     not exist, exit 1, and leave nothing behind (not even
#     ~/.local/share/guts);
#   - a data dir that cannot be used says why with the system's own words:
#     "Not a directory", "Permission denied" (as a user who cannot read the
#     service's data dir, for guts and for git clone alike), never a bare
#     "I/O error".
set -euo pipefail
. "$(dirname "$0")/lib.bash"
. "$(dirname "$0")/lib/netns.sh" # make_repo only: one process at a time here
export PATH="$GUTS_BUILD:$PATH"

# --- Absent: nothing is created --------------------------------------------
missing="$TMP/mistyped"
for args in "ls" "status" "status --json" "peers" "peers --json" "refs a/b" "log a/b" \
            "fsck a/b" "export a/b $TMP/x" "rm a/b --yes"; do
  # shellcheck disable=SC2086
  expect 1 "$GUTS" --data "$missing" $args
  one_line_error
  grep -qF "data directory \"$missing\" does not exist" "$TMP/err" || fail "$args: $(cat "$TMP/err")"
  [ ! -e "$missing" ] || fail "$args created the data dir"
done
[ ! -e "$TMP/x" ] || fail "export from an absent data dir created OUTDIR"

# The helper finds the data dir as guts does: $GUTS_DATA, else the default.
(
  unset GUTS_DATA
  rc=0
  git clone -q guts://a/b "$TMP/clone" 2>"$TMP/err" || rc=$?
  [ $rc -ne 0 ] || fail "clone from an absent default data dir succeeded"
  grep -qF "data directory \"$HOME/.local/share/guts\" does not exist" "$TMP/err" ||
    fail "clone: $(cat "$TMP/err")"
  [ ! -e "$HOME/.local/share/guts" ] || fail "a failed clone created ~/.local/share/guts"
  [ ! -e "$HOME/.local" ] || fail "a failed clone created ~/.local"
)
rc=0
GUTS_DATA="$missing" git clone -q guts://a/b "$TMP/clone" 2>"$TMP/err" || rc=$?
[ $rc -ne 0 ] && grep -qF "data directory \"$missing\" does not exist" "$TMP/err" ||
  fail "clone with GUTS_DATA absent: $(cat "$TMP/err")"
[ ! -e "$missing" ] || fail "a failed clone created \$GUTS_DATA"

# An existing directory that is not a data dir is not made into one.
mkdir "$TMP/empty"
expect 1 "$GUTS" --data "$TMP/empty" ls
one_line_error
grep -q "not a guts data directory" "$TMP/err" || fail "empty dir: $(cat "$TMP/err")"
[ -z "$(ls -A "$TMP/empty")" ] || fail "ls wrote into a directory that is not a data dir"

# --- Unusable: the cause is named ------------------------------------------
: >"$TMP/file"
expect 1 "$GUTS" --data "$TMP/file" ls
one_line_error
grep -qF "cannot open data directory \"$TMP/file\": Not a directory" "$TMP/err" ||
  fail "file as data dir: $(cat "$TMP/err")"
make_repo "$TMP/src" 1 >/dev/null
expect 1 "$GUTS" --data "$TMP/file/sub" import a/b "$TMP/src"
one_line_error
grep -q "Not a directory" "$TMP/err" || fail "import under a file: $(cat "$TMP/err")"

# A data dir of another user (the service's, mode 0700): permission denied.
expect 0 "$GUTS" import a/b "$TMP/src"
as_other=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
   setpriv --reuid=65534 --regid=65534 --clear-groups true 2>/dev/null; then
  chmod 711 "$TMP" # others may pass through TMP, not read the data dir
  mkdir "$TMP/other-home" && chown 65534:65534 "$TMP/other-home"
  as_other=(env HOME="$TMP/other-home" setpriv --reuid=65534 --regid=65534 --clear-groups)
elif [ "$(id -u)" != 0 ]; then
  chmod 000 "$GUTS_DATA" # not root: our own mode bits bind us
  mkdir "$TMP/other-home"
  as_other=(env HOME="$TMP/other-home")
fi
if [ ${#as_other[@]} -gt 0 ]; then
  expect 1 "${as_other[@]}" "$GUTS" --data "$GUTS_DATA" ls
  one_line_error
  grep -qF "cannot open data directory \"$GUTS_DATA\":" "$TMP/err" && grep -q "Permission denied" "$TMP/err" ||
    fail "unreadable data dir: $(cat "$TMP/err")"
  rc=0
  (cd "$TMP/other-home" && GUTS_DATA="$GUTS_DATA" "${as_other[@]}" git clone -q guts://a/b c) 2>"$TMP/err" || rc=$?
  [ $rc -ne 0 ] || fail "clone from an unreadable data dir succeeded"
  grep -q "Permission denied" "$TMP/err" || fail "clone, unreadable data dir: $(cat "$TMP/err")"
  chmod 700 "$GUTS_DATA"
else
  echo "cli_data_dir: no way to act as another user here: permission case not run" >&2
fi
echo "cli_data_dir: ok"

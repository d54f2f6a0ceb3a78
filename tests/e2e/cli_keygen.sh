#!/usr/bin/env bash
# guts keygen FILE: writes a key (one line of 64 hex digits) with mode 0600
# and prints its id;
# never replaces an existing file (exit 1, file untouched); usage errors exit
# 2 with one line; two keys differ; guts-node accepts the key with
# --key-file and refuses one whose mode lets others read it (exit 2).
set -euo pipefail
. "$(dirname "$0")/lib.bash"

k="$TMP/cluster.key"
expect 0 "$GUTS" keygen "$k"
grep -Eq "^wrote .*cluster.key \(key id [0-9a-f]{8}\)$" "$TMP/out" || fail "keygen output: $(cat "$TMP/out")"
[ "$(stat -c %a "$k")" = 600 ] || fail "mode $(stat -c %a "$k"), want 600"
[ "$(stat -c %s "$k")" = 65 ] || fail "size $(stat -c %s "$k"), want 65"
grep -Eqx "[0-9a-f]{64}" "$k" || fail "not a line of 64 hex digits"
id1=$(sed -E 's/.*key id ([0-9a-f]{8}).*/\1/' "$TMP/out")
sum=$(sha256sum "$k")

# Never replaces an existing file, key or not.
expect 1 "$GUTS" keygen "$k"
one_line_error
grep -q "exists" "$TMP/err" || fail "no 'exists' in: $(cat "$TMP/err")"
[ "$(sha256sum "$k")" = "$sum" ] || fail "existing key was changed"
echo precious >"$TMP/other"
expect 1 "$GUTS" keygen "$TMP/other"
[ "$(cat "$TMP/other")" = precious ] || fail "existing file was changed"

# A directory that does not exist: operational error, nothing left behind.
expect 1 "$GUTS" keygen "$TMP/nodir/k"
one_line_error
[ ! -e "$TMP/nodir" ] || fail "keygen created a directory"

# Usage errors.
expect 2 "$GUTS" keygen
one_line_error
expect 2 "$GUTS" keygen a b
one_line_error
expect 2 "$GUTS" keygen --bogus "$TMP/k3"
one_line_error
[ ! -e "$TMP/k3" ] || fail "keygen wrote a file on a usage error"
expect 0 "$GUTS" keygen --help
grep -q "^usage: guts keygen FILE" "$TMP/out" || fail "keygen --help"
expect 0 "$GUTS" --help
grep -q "^  keygen " "$TMP/out" || fail "guts --help does not list keygen"

# A second key is a different key (and id, but for a 2^-32 chance).
expect 0 "$GUTS" keygen "$TMP/k2"
cmp -s "$k" "$TMP/k2" && fail "two keygens wrote the same key"

# guts-node: a key readable by others, a short file or a missing one is
# refused with one line and exit 2, before anything is opened.
NODE="$GUTS_BUILD/guts-node"
if [ -x "$NODE" ]; then
  cp "$k" "$TMP/loose.key"
  chmod 0644 "$TMP/loose.key"
  head -c 31 "$k" >"$TMP/short.key"
  chmod 0600 "$TMP/short.key"
  for bad in "$TMP/loose.key" "$TMP/short.key" "$TMP/missing.key"; do
    expect 2 "$NODE" --data "$TMP/nd" --key-file "$bad"
    [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "guts-node --key-file $bad: not one line: $(cat "$TMP/err")"
    grep -q '^guts-node: ' "$TMP/err" || fail "guts-node error: $(cat "$TMP/err")"
  done
  [ ! -e "$TMP/nd" ] || fail "guts-node created its data dir despite a bad key"
fi
echo "ok ($id1)"

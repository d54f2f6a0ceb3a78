#!/usr/bin/env bash
# The guts command's contract with scripts: usage errors exit 2 with one line
# on stderr, --help exits 0, operational errors exit 1 with one line naming
# the input, and status --json is valid JSON.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

for args in "" "--bogus" "frobnicate" "import" "import a/b" "import a/b c d" \
            "export a/b" "fsck" "fsck a/b c" "status extra" "status --yaml" \
            "import --bogus a/b c" "import --force a/b" "--data" "doctor extra" "doctor --yaml"; do
  # shellcheck disable=SC2086
  expect 2 "$GUTS" $args
  [ -z "$args" ] || one_line_error
done
grep -q '"frobnicate"' <("$GUTS" frobnicate 2>&1) || fail "unknown command not named"
for bad in "a" "/b" "a/" "a/b/c" ".a/b" "a/.." "../b" "a b/c" "a/b\$" \
           "$(printf 'x%.0s' $(seq 101))/b"; do
  expect 2 "$GUTS" fsck "$bad"
  one_line_error
  grep -qF "\"$bad\"" "$TMP/err" || fail "key not named: $(cat "$TMP/err")"
done
[ ! -e "$GUTS_DATA" ] || fail "usage errors created the data dir"

expect 0 "$GUTS" --help
grep -q '^usage: guts' "$TMP/out" || fail "--help"
for c in import export status fsck doctor; do
  expect 0 "$GUTS" "$c" --help
  grep -q "^usage: guts $c" "$TMP/out" || fail "$c --help"
done

# Read-only commands never create the data dir: absent, it is an error.
expect 1 "$GUTS" fsck no/such
one_line_error
grep -q "data directory \"$GUTS_DATA\" does not exist" "$TMP/err" || fail "absent data dir: $(cat "$TMP/err")"
[ ! -e "$GUTS_DATA" ] || fail "fsck created the data dir"
expect 1 "$GUTS" --data /proc/forbidden status
one_line_error

# import creates it.
git init -q "$TMP/g"
git -C "$TMP/g" commit -q --allow-empty -m one
expect 0 "$GUTS" import a/b "$TMP/g"
expect 1 "$GUTS" fsck no/such
one_line_error
grep -q '"no/such"' "$TMP/err" || fail "missing repository not named"

# Data dir: --data beats $GUTS_DATA; both work.
expect 0 "$GUTS" status --json
/usr/bin/python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); assert [r["key"] for r in d["repos"]] == ["a/b"] and len(d["node"]) == 32' "$TMP/out" || fail "status --json"
node=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["node"])' "$TMP/out")
expect 0 "$GUTS" status
grep -q "^node $node\$" "$TMP/out" || fail "node id not stable across runs"
expect 0 "$GUTS" --data "$TMP/other" import a/b "$TMP/g"
[ -d "$TMP/other/repos" ] || fail "--data dir not created"
expect 0 "$GUTS" --data "$TMP/other" status
grep -q "^node $node\$" "$TMP/out" && fail "--data ignored"
echo "cli_usage: ok"

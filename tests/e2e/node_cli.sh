#!/usr/bin/env bash
# guts-node's command line is strict: every bad argument fails with exit 2
# and one line on stderr naming the problem; --help prints usage, exit 0.
# (No sockets are opened: nothing here needs a network namespace.)
set -euo pipefail
. "$(dirname "$0")/lib.bash"
NODE="$GUTS_BUILD/guts-node"
[ -x "$NODE" ] || fail "no $NODE"

expect 0 "$NODE" --help
grep -q '^usage: guts-node' "$TMP/out" || fail "--help prints no usage"
while IFS='|' read -r args want; do
  # shellcheck disable=SC2086
  expect 2 "$NODE" $args
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || { cat "$TMP/err" >&2; fail "not one line: $args"; }
  grep -q -- "$want" "$TMP/err" || fail "'$args': stderr lacks '$want': $(cat "$TMP/err")"
done <<'TABLE'
--bogus|unknown option
--data|missing value
--interval-ms 5|--interval-ms
--interval-ms 10x|--interval-ms
--interval-ms -1|--interval-ms
--group 10.0.0.1:7171|--group
--group 239.255.1.1|--group
--group 239.255.1.1:0|--group
--group 239.255.1.1:70000|--group
--listen 239.1.1.1:5|--listen
--listen nohost.invalid.:5|--listen
--peer 127.0.0.1|--peer
--peer 127.0.0.1:0|--peer
--iface no-such-if0|--iface
--group [fd00::1]:7171|--group
--group [ff12::1]|--group
--listen [ff02::1]:5|--listen
--listen fd00::1:5|expected ADDR:PORT or \[ADDR\]:PORT
--peer [fe80::1]:7171|--peer
--peer [fe80::1%no-such-if0]:7171|--peer
--peer [fd00::1:7171|--peer
--peer [zz::1]:7171|--peer
TABLE
# IPv6 forms that parse: only the usage error after them fails
while IFS='|' read -r args want; do
  # shellcheck disable=SC2086
  expect 2 "$NODE" $args extra-arg
  grep -q -- "$want" "$TMP/err" || fail "'$args' was refused: $(cat "$TMP/err")"
done <<'TABLE'
--group [ff12::7171]:7171|unexpected argument
--group 239.255.1.1:7171 --group [ff15::1]:7000|unexpected argument
--listen [::]:0|unexpected argument
--listen [fd00::5]:7172|unexpected argument
--peer [fe80::1%lo]:7171|unexpected argument
--peer [fe80::1%1]:7171|unexpected argument
--peer [2001:db8::1]:7171 --peer 10.0.0.1:7171|unexpected argument
--iface lo --iface lo|unexpected argument
--log-level loud|--log-level
extra-arg|unexpected argument
TABLE
echo "ok"

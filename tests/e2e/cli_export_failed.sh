#!/usr/bin/env bash
# A failed export leaves nothing half-written (issue 13, item 7): OUTDIR on
# a tmpfs too small for the pack (private mount namespace) makes export
# fail with the cause; what it created is removed - OUTDIR itself and any
# parent git init made, but an OUTDIR that existed empty before stays,
# emptied - so the retry with room is not refused as "not empty" and gives
# a repository equal to the source.
set -euo pipefail
NETNS_MOUNT=1
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

src="$TMP/src"
make_repo "$src" 2
head -c $((1 << 20)) /dev/urandom >"$src/big.bin" # incompressible: the pack needs 1 MiB
git -C "$src" add -A && git -C "$src" commit -q -m big
expect 0 "$GUTS" import alice/repo "$src"

small="$TMP/small"
netns_tmpfs "$small" $((512 << 10)) # room for git init, not for the pack

# OUTDIR absent, and its parent too: both go.
expect 1 "$GUTS" export alice/repo "$small/parent/out"
one_line_error
grep -q "No space left on device" "$TMP/err" || fail "export failed without its cause: $(cat "$TMP/err")"
[ ! -e "$small/parent" ] || { find "$small" >&2; fail "failed export left $small/parent"; }

# OUTDIR an existing empty directory: it stays, empty.
mkdir "$small/empty"
expect 1 "$GUTS" export alice/repo "$small/empty"
[ -d "$small/empty" ] || fail "failed export removed the OUTDIR that existed before"
[ -z "$(ls -A "$small/empty")" ] || { find "$small" >&2; fail "failed export left files in OUTDIR"; }
[ "$(ls -A "$small")" = empty ] || { find "$small" >&2; fail "failed export left something beside OUTDIR"; }

# With room, the retry into the same OUTDIR works.
mount -o remount,size=$((8 << 20)) "$small" || { echo "cannot grow the tmpfs: skipped" >&2; exit 77; }
expect 0 "$GUTS" export alice/repo "$small/empty"
git -C "$small/empty" fsck --strict --full --no-progress >/dev/null 2>&1 || fail "git fsck of the retried export"
same_repo "$src" "$small/empty"
echo "ok"

#!/usr/bin/env bash
# guts fsck --repair (issue 20, item 2): a stored record whose bytes were
# damaged (the env itself intact) is a fault naming the object; --repair
# drops exactly that object, says which, keeps count and fingerprint right
# (a second fsck finds no count or fingerprint fault, only the now-missing
# link that a node fetches again), and never touches a good object.
set -euo pipefail
. "$(dirname "$0")/lib.bash"

src="$TMP/src"
git init -q "$src"
# Under 24 bytes: stored raw, so its bytes can be found in data.mdb.
marker='damage-me 0123456789'
(cd "$src" && printf '%s\n' "$marker" >bad && echo fine >good && git add bad good && git commit -q -m one)
bad=$(git -C "$src" rev-parse HEAD:bad)

expect 0 "$GUTS" import p/r "$src"
expect 0 "$GUTS" fsck p/r
before=$("$GUTS" fsck --json p/r | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["objects"])')

damage_record "$GUTS_DATA/repos/p/r" "$marker"

expect 1 "$GUTS" fsck p/r
grep -q "object $bad" "$TMP/out" || fail "fsck does not name the damaged object: $(cat "$TMP/out")"

expect 0 "$GUTS" fsck --repair p/r
grep -q "^p/r: dropped damaged object $bad\$" "$TMP/out" || fail "--repair does not name what it dropped: $(cat "$TMP/out")"
grep -q "dropped 1 damaged object;" "$TMP/out" || fail "--repair does not count: $(cat "$TMP/out")"

# After: one object fewer, no count or fingerprint fault, the tree's link
# to the dropped blob is the only fault (a node fetches it again).
expect 1 "$GUTS" fsck --json p/r
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["objects"] == int(sys.argv[2]) - 1, d
assert d["faults"] == 1 and "links to missing" in d["shown"][0] and sys.argv[3] in d["shown"][0], d
assert d["dropped"] == [], d' "$TMP/out" "$before" "$bad" || fail "fsck after --repair: $(cat "$TMP/out")"
# A second --repair has nothing to drop, and the good objects all read.
expect 1 "$GUTS" fsck --repair p/r
if grep -q 'dropped' "$TMP/out"; then fail "a second --repair dropped something: $(cat "$TMP/out")"; fi
echo "ok"

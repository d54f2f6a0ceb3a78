#!/usr/bin/env bash
# A fetch from guts:// of a few new commits sends a thin pack: an object
# the store keeps as a delta against a version the local repository has
# goes as a git delta against it (git's own fetch does the same), so a
# one-line change to a 2 MB file costs a few hundred bytes, not the file.
# Checked against what git itself would send (`pack-objects --thin`) for a
# small fetch (unpack-objects) and for one over the unpack limit
# (index-pack --fix-thin), each followed by git fsck --strict.
set -euo pipefail
. "$(dirname "$0")/lib.bash"
[ -x "$GUTS_BUILD/git-remote-guts" ] || { echo "no git-remote-guts: build it first" >&2; exit 1; }
export PATH="$GUTS_BUILD:$PATH"

# The helper's own count of what it sent (git -vv passes verbosity 3).
sent_bytes() { sed -n 's/^guts: fetched .*pack \([0-9]*\) bytes.*/\1/p' "$TMP/err"; }
# What git would send for the new commits: its thin pack of HEAD ^HEAD~1.
git_thin_bytes() { printf 'HEAD\n^HEAD~1\n' | git -C "$1" pack-objects -q --revs --thin --stdout | wc -c; }

w="$TMP/w"
git init -q "$w"
/usr/bin/python3 - "$w" <<'PY'
import random, sys
rng = random.Random(3)
words = ["alpha", "beta", "gamma", "delta", "eps"]
line = lambda: " ".join(rng.choice(words) for _ in range(10)) + "\n"
open(sys.argv[1] + "/big.txt", "w").write("".join(line() for _ in range(40000)))
for i in range(120):
    open(sys.argv[1] + "/f%03d.txt" % i, "w").write("".join(line() for _ in range(300)))
PY
git -C "$w" add -A && git -C "$w" commit -q -m one
expect 0 git -C "$w" push -q guts://alice/thin main
expect 0 git clone -q guts://alice/thin "$TMP/c"

# --- one line of the 2 MB file: 3 objects, unpack-objects --------------------------
sed -i '20000s/.*/one changed line/' "$w/big.txt"
git -C "$w" commit -q -am two
expect 0 git -C "$w" push -q guts://alice/thin main
expect 0 git -C "$TMP/c" fetch -vv
got=$(sent_bytes) want=$(git_thin_bytes "$w")
[ -n "$got" ] || fail "no byte count from the helper: $(cat "$TMP/err")"
[ "$got" -le $((2 * want)) ] || fail "a one-line change sent $got bytes, git sends $want"
[ "$(git -C "$TMP/c" rev-parse origin/main)" = "$(git -C "$w" rev-parse main)" ] || fail "origin/main"
git -C "$TMP/c" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck after the thin fetch"

# --- one line of each of 120 files: over the unpack limit, index-pack --fix-thin ------
for i in $(seq -f '%03g' 0 119); do sed -i '150s/.*/changed too/' "$w/f$i.txt"; done
git -C "$w" commit -q -am three
expect 0 git -C "$w" push -q guts://alice/thin main
expect 0 git -C "$TMP/c" fetch -vv
got=$(sent_bytes) want=$(git_thin_bytes "$w")
[ "$got" -le $((2 * want)) ] || fail "120 one-line changes sent $got bytes, git sends $want"
[ "$(find "$TMP/c/.git/objects/pack" -name '*.pack' | wc -l)" -eq 2 ] || fail "want the fetch kept as a pack"
git -C "$TMP/c" fsck --strict --no-progress >/dev/null 2>&1 || fail "git fsck after the --fix-thin fetch"
echo "ok"

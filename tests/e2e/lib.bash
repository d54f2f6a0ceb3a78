# lib.bash - helpers shared by the CLI end-to-end tests (sourced, not run;
# the .bash suffix keeps it out of CMake's tests/e2e/*.sh glob).
#
# Every test gets a private temp dir, removed on exit, a private HOME and git
# identity so the user's git configuration cannot change results, and a
# GUTS_DATA inside the temp dir so nothing outside it is touched.

: "${GUTS_BUILD:?GUTS_BUILD must name the build directory}"
GUTS="$GUTS_BUILD/guts"
[ -x "$GUTS" ] || { echo "no $GUTS: build it first" >&2; exit 1; }
command -v git >/dev/null || { echo "git not installed: skipped" >&2; exit 77; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/guts-e2e.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export HOME="$TMP/home" GIT_CONFIG_NOSYSTEM=1 GUTS_DATA="$TMP/data"
export GIT_AUTHOR_NAME="Guts Test" GIT_AUTHOR_EMAIL="test@guts.invalid"
export GIT_COMMITTER_NAME="Guts Test" GIT_COMMITTER_EMAIL="test@guts.invalid"
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
mkdir -p "$HOME"
git config --global init.defaultBranch main
git config --global advice.detachedHead false

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect CODE CMD...: run CMD, require exit status CODE; stderr in $TMP/err.
expect() {
  local want=$1 got=0; shift
  "$@" >"$TMP/out" 2>"$TMP/err" || got=$?
  [ "$got" -eq "$want" ] || { cat "$TMP/out" "$TMP/err" >&2; fail "exit $got, want $want: $*"; }
}

# one_line_error: the last command's stderr is exactly one line starting "guts: ".
one_line_error() {
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || { cat "$TMP/err" >&2; fail "stderr is not one line"; }
  grep -q '^guts: ' "$TMP/err" || fail "stderr does not start with 'guts: ': $(cat "$TMP/err")"
}

# What "equal repositories" means: same objects, same refs, same HEAD.
git_objects() { git -C "$1" cat-file --batch-all-objects --batch-check | sort; }
git_refs() { git -C "$1" for-each-ref --format='%(objectname) %(objecttype) %(refname)'; }
git_head() { git -C "$1" symbolic-ref -q HEAD || git -C "$1" rev-parse HEAD; }

same_repo() {
  local a=$1 b=$2
  diff <(git_objects "$a") <(git_objects "$b") >"$TMP/diff" || { head -20 "$TMP/diff" >&2; fail "objects differ: $a $b"; }
  diff <(git_refs "$a") <(git_refs "$b") >"$TMP/diff" || { head -20 "$TMP/diff" >&2; fail "refs differ: $a $b"; }
  [ "$(git_head "$a")" = "$(git_head "$b")" ] || fail "HEAD differs: $(git_head "$a") vs $(git_head "$b")"
}

# mdb_entries ENV DB: the entry count mdb_stat -a reports for one database.
mdb_entries() {
  mdb_stat -a "$1" | awk -v db="$2" '$0 == "Status of " db {f = 1; next}
                                      /^Status of / {f = 0}
                                      f && $1 == "Entries:" {print $2; exit}'
}

# damage_env ENVDIR KIND: damage an LMDB environment's data.mdb the ways a
# disk or a hostile hand can (issue 13, item 2; issue 20, item 1):
#   truncate  cut to half its length
#   empty     cut to zero bytes
#   random    random bytes over every page after the two meta pages
#   middle    64 KiB of random bytes from the middle of the file
#   leafflip  bytes 8-15 of every leaf page's header inverted (flags,
#             lower/upper bounds: what made mdb_cursor_next assert)
damage_env() {
  /usr/bin/python3 - "$1/data.mdb" "$2" <<'PY'
import os, struct, sys
path, kind = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
with open(path, "r+b") as f:
    psize = struct.unpack_from("<I", f.read(64), 16 + 24)[0]
    if kind == "truncate":
        f.truncate(size // 2)
    elif kind == "empty":
        f.truncate(0)
    elif kind == "random":
        f.seek(2 * psize)
        f.write(os.urandom(size - 2 * psize))
    elif kind == "middle":
        f.seek(size // 2)
        f.write(os.urandom(65536))
    elif kind == "leafflip":
        n = 0
        for pg in range(2, size // psize):
            f.seek(pg * psize + 8)
            hdr = bytearray(f.read(8))
            if struct.unpack_from("<H", hdr, 2)[0] & 0x02:  # P_LEAF
                f.seek(pg * psize + 8)
                f.write(bytes(b ^ 0xFF for b in hdr))
                n += 1
        if n == 0:
            sys.exit("no leaf page to damage")
    else:
        sys.exit("unknown damage " + kind)
PY
}

# damage_record DIR MARKER: flip one byte of every copy of MARKER in DIR's
# data.mdb (an old copy may sit in a free page). Value bytes only: every
# page stays valid; the object stored raw with MARKER (a blob under 24
# bytes) then no longer hashes to its id.
damage_record() {
  /usr/bin/python3 - "$1/data.mdb" "$2" <<'PY'
import sys
path, marker = sys.argv[1], sys.argv[2].encode()
b = bytearray(open(path, 'rb').read())
n, i = 0, b.find(marker)
while i >= 0:
    b[i] ^= 0x20
    n += 1
    i = b.find(marker, i + 1)
if n == 0:
    sys.exit("marker not found")
open(path, 'r+b').write(b)
PY
}

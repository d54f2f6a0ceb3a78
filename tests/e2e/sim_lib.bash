# sim_lib.bash - helpers for the guts-sim end-to-end tests (sourced; the
# .bash suffix keeps it out of CMake's tests/e2e/*.sh glob). guts-sim needs
# no git, no network and no data dir: only a private temp dir.

: "${GUTS_BUILD:?GUTS_BUILD must name the build directory}"
SIM="$GUTS_BUILD/guts-sim"
[ -x "$SIM" ] || { echo "no $SIM: build it first" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/guts-sim-e2e.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export TMPDIR="$TMP" # --lmdb makes its temp dir here: nothing can leak

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect CODE CMD...: run CMD, require exit status CODE; output in $TMP/out,
# stderr in $TMP/err.
expect() {
  local want=$1 got=0; shift
  "$@" >"$TMP/out" 2>"$TMP/err" || got=$?
  [ "$got" -eq "$want" ] || { cat "$TMP/out" "$TMP/err" >&2; fail "exit $got, want $want: $*"; }
}

# The report without its wall-clock line: what must be identical between runs.
strip_wall() { grep -v -e '^  "wall": ' -e '^wall: ' "$@"; }

#!/usr/bin/env bash
# zlib's real history (../shared/data/zlib.bundle, cloned with --mirror:
# 12,341 objects, 861 refs) survives guts import + export, and guts status
# reports exactly the entry counts mdb_stat -a sees in the repository's env.
set -euo pipefail
. "$(dirname "$0")/lib.bash"
bundle="${GUTS_SRC:-$(dirname "$0")/../..}/../shared/data/zlib.bundle"
[ -f "$bundle" ] || { echo "no $bundle: skipped" >&2; exit 77; }
command -v mdb_stat >/dev/null || { echo "no mdb_stat (lmdb-utils): skipped" >&2; exit 77; }

git clone -q --mirror "$bundle" "$TMP/zlib.git"
[ "$(git_objects "$TMP/zlib.git" | wc -l)" -eq 12341 ] || fail "bundle does not hold 12341 objects"
[ "$(git_refs "$TMP/zlib.git" | wc -l)" -eq 861 ] || fail "bundle does not hold 861 refs"

expect 0 "$GUTS" import madler/zlib "$TMP/zlib.git"
grep -q ': 12341 objects added (12341 in git' "$TMP/out" || fail "import: $(cat "$TMP/out")"
expect 0 "$GUTS" export madler/zlib "$TMP/out.git"
git -C "$TMP/out.git" fsck --strict --full --no-progress || fail "git fsck of the export"
same_repo "$TMP/zlib.git" "$TMP/out.git"

expect 0 "$GUTS" fsck madler/zlib
grep -q ' 0 faults' "$TMP/out" || fail "fsck: $(cat "$TMP/out")"

# status (text and JSON) against mdb_stat's own entry counts.
env="$GUTS_DATA/repos/madler/zlib"
mdb_objects=$(mdb_entries "$env" objects)
mdb_refs=$(mdb_entries "$env" refs)
[ "$mdb_objects" = 12341 ] || fail "mdb_stat objects: '$mdb_objects'"
[ "$mdb_refs" = 862 ] || fail "mdb_stat refs: '$mdb_refs' (861 refs + HEAD)"
expect 0 "$GUTS" status
grep -Eq "^madler/zlib +$mdb_objects +$mdb_refs " "$TMP/out" || fail "status: $(cat "$TMP/out")"
expect 0 "$GUTS" status --json
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
r = [x for x in d["repos"] if x["key"] == "madler/zlib"][0]
assert (r["objects"], r["refs"]) == (int(sys.argv[2]), int(sys.argv[3])), r
assert len(r["fingerprint"]) == 32 and len(d["node"]) == 32, d
' "$TMP/out" "$mdb_objects" "$mdb_refs" || fail "status --json"
echo "roundtrip_zlib: ok"

#!/usr/bin/env bash
# Two nodes replicate a real repository, zlib's history (mirror of
# ../shared/data/zlib.bundle, skipped when absent), both ways: imported into
# a, it reaches b and exports from b fsck-clean and equal (objects, refs,
# HEAD); new commits imported into b flow back to a.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

bundle="${GUTS_SRC:-$(dirname "$0")/../..}/../shared/data/zlib.bundle"
[ -f "$bundle" ] || { echo "no $bundle: skipped" >&2; exit 77; }
src="$TMP/zlib.git"
git clone -q --mirror "$bundle" "$src"
total=$(git -C "$src" cat-file --batch-all-objects --batch-check | wc -l)

node_start a
node_start b
expect 0 "$GUTS" --data "$TMP/a" import madler/zlib "$src"
start=$SECONDS
wait_until 120 "zlib replicated to b" repos_equal madler/zlib "$TMP/a" "$TMP/b"
echo "zlib ($total objects) replicated a -> b in about $((SECONDS - start)) s"
export_check b madler/zlib "$src"

# Back the other way: a new branch with commits made on top of zlib.
work="$TMP/work"
git clone -q "$src" "$work"
(cd "$work" && git checkout -q -b guts-test && for i in 1 2 3; do
   printf 'guts %d\n' "$i" >>README && git commit -q -am "guts change $i"; done &&
 git push -q "$src" guts-test)
expect 0 "$GUTS" --data "$TMP/b" import madler/zlib "$src"
wait_until 60 "b's branch replicated to a" repos_equal madler/zlib "$TMP/a" "$TMP/b"
export_check a madler/zlib "$src"
node_stop a
node_stop b
echo "ok"

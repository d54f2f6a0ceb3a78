#!/usr/bin/env bash
# Several peers at once: six nodes start together, a repository imported
# into one reaches all five others (served concurrently, then also from the
# nodes that already have it), and two more repositories written on two
# other nodes spread everywhere too. Every node ends with every repository,
# fsck-clean.
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

bundle="${GUTS_SRC:-$(dirname "$0")/../..}/../shared/data/zlib.bundle"
big="$TMP/big.git"
if [ -f "$bundle" ]; then
  git clone -q --mirror "$bundle" "$big"
else
  make_repo "$TMP/gen" 30
  git clone -q --mirror "$TMP/gen" "$big"
fi
make_repo "$TMP/s2" 3
make_repo "$TMP/s3" 2
nodes="n1 n2 n3 n4 n5 n6"
for n in $nodes; do node_start "$n"; done
wait_until 30 "n1 sees the five others" peers_at_least n1 5

expect 0 "$GUTS" --data "$TMP/n1" import big/repo "$big"
expect 0 "$GUTS" --data "$TMP/n3" import small/two "$TMP/s2"
expect 0 "$GUTS" --data "$TMP/n6" import small/three "$TMP/s3"
dirs=(); for n in $nodes; do dirs+=("$TMP/$n"); done
wait_until 180 "big/repo on all six" repos_equal big/repo "${dirs[@]}"
wait_until 60 "small/two on all six" repos_equal small/two "${dirs[@]}"
wait_until 60 "small/three on all six" repos_equal small/three "${dirs[@]}"
export_check n5 big/repo "$big"
export_check n2 small/three "$TMP/s3"
expect 0 "$GUTS" --data "$TMP/n4" fsck big/repo
for n in $nodes; do node_stop "$n"; done
echo "ok"

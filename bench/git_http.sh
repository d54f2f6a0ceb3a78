#!/usr/bin/env bash
# bench/git_http.sh - git smart HTTP from guts-node against git's own
# server (git daemon, git://, serving the same repository from a packed
# mirror), in a private network namespace: clone --mirror of zlib and a
# fetch of a few new commits, RUNS alternating runs each (median), and the
# node's RssAnon sampled while it serves.
#   GUTS_BUILD=build ./bench/git_http.sh [RUNS]    (a release build: not ASan)
set -euo pipefail
RUNS=${1:-5}
export GUTS_BUILD=${GUTS_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
export GUTS_SRC=${GUTS_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
. "$GUTS_SRC/tests/e2e/lib/netns.sh"
netns_enter "$0" "$@"
bundle="$GUTS_SRC/../shared/data/zlib.bundle"
[ -f "$bundle" ] || { echo "no $bundle: skipped" >&2; exit 77; }
export PATH="$GUTS_BUILD:$PATH"

git clone -q --mirror "$bundle" "$TMP/srv/zlib.git"
git -C "$TMP/srv/zlib.git" repack -adq
expect 0 "$GUTS" --data "$TMP/a" import madler/zlib "$TMP/srv/zlib.git"
node_start a --http 127.0.0.1:7172
git daemon --export-all --base-path="$TMP/srv" --reuseaddr --listen=127.0.0.1 --port=9418 \
  2>"$TMP/daemon.log" &
EXTRA_PIDS+=("$!")
wait_until 10 "git daemon listens" git ls-remote git://127.0.0.1:9418/zlib.git
wait_until 10 "the node serves" git ls-remote http://127.0.0.1:7172/madler/zlib
objects=$(git -C "$TMP/srv/zlib.git" count-objects -v | awk '/in-pack/ {print $2}')
refs=$(git -C "$TMP/srv/zlib.git" for-each-ref | wc -l)

rss_peak=0
# sample the node's RssAnon every 100 ms while CMD runs; keep the peak
# (kB). Read with bash builtins: a process per sample would cost the
# clone being measured a share of the CPU.
sampled() {
  local pid=${NODE_PID[a]} peak=0 k v _
  "$@" &
  local cpid=$!
  while kill -0 "$cpid" 2>/dev/null; do
    while read -r k v _; do
      [ "$k" != RssAnon: ] || [ "$v" -le "$peak" ] || peak=$v
    done <"/proc/$pid/status"
    sleep 0.1
  done
  wait "$cpid"
  [ "$peak" -le "$rss_peak" ] || rss_peak=$peak
}
secs() { local t0 t1; t0=$(date +%s%N); "$@"; t1=$(date +%s%N); echo "scale=3; ($t1 - $t0) / 1000000000" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

: >"$TMP/t-guts"
: >"$TMP/t-git"
for i in $(seq 1 "$RUNS"); do
  rm -rf "$TMP/c1" "$TMP/c2"
  secs sampled git clone -q --mirror http://127.0.0.1:7172/madler/zlib "$TMP/c1" >>"$TMP/t-guts"
  secs git clone -q --mirror git://127.0.0.1:9418/zlib.git "$TMP/c2" >>"$TMP/t-git"
done
git -C "$TMP/c1" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of the clone from the node"
pack_guts=$(du -b "$TMP"/c1/objects/pack/*.pack | awk '{s += $1} END {print s}')
pack_git=$(du -b "$TMP"/c2/objects/pack/*.pack | awk '{s += $1} END {print s}')
cg=$(median <"$TMP/t-guts")
cd=$(median <"$TMP/t-git")
echo "clone --mirror zlib ($objects objects, $refs refs): guts-node ${cg}s, git daemon ${cd}s (ratio $(echo "scale=2; $cg / $cd" | bc)); packs $pack_guts vs $pack_git bytes; node RssAnon peak ${rss_peak} kB"

# a fetch of three new commits, each side from a clone made before them
: >"$TMP/f-guts"
: >"$TMP/f-git"
: >"$TMP/b-guts"
: >"$TMP/b-git"
work="$TMP/work"
git clone -q "$TMP/srv/zlib.git" "$work"
for i in $(seq 1 "$RUNS"); do
  rm -rf "$TMP/f1" "$TMP/f2"
  git clone -q --mirror http://127.0.0.1:7172/madler/zlib "$TMP/f1"
  git clone -q --mirror git://127.0.0.1:9418/zlib.git "$TMP/f2"
  for k in 1 2 3; do
    printf 'bench %s %s\n' "$i" "$k" >>"$work/README"
    seq 1 $((k * 100)) >"$work/bench-$k.txt"
    git -C "$work" add -A && git -C "$work" commit -qm "bench $i $k"
  done
  git -C "$work" push -q origin HEAD
  expect 0 "$GUTS" --data "$TMP/a" import madler/zlib "$TMP/srv/zlib.git"
  wait_until 10 "the node has the new commits" sh -c \
    "git ls-remote http://127.0.0.1:7172/madler/zlib | grep -q $(git -C "$work" rev-parse HEAD)"
  before1=$(ls "$TMP"/f1/objects/pack/*.pack)
  before2=$(ls "$TMP"/f2/objects/pack/*.pack)
  secs git -C "$TMP/f1" -c fetch.unpackLimit=1 fetch -q >>"$TMP/f-guts"
  secs git -C "$TMP/f2" -c fetch.unpackLimit=1 fetch -q >>"$TMP/f-git"
  for s in 1 2; do
    b=$(eval "echo \$before$s")
    for p in "$TMP"/f$s/objects/pack/*.pack; do
      case " $b " in *" $p "*) ;; *) du -b "$p" | awk '{print $1}' >>"$TMP/b-$([ $s = 1 ] && echo guts || echo git)";; esac
    done
  done
done
fg=$(median <"$TMP/f-guts")
fd=$(median <"$TMP/f-git")
bg=$(median <"$TMP/b-guts")
bd=$(median <"$TMP/b-git")
echo "fetch of 3 new commits: guts-node ${fg}s, git daemon ${fd}s (ratio $(echo "scale=2; $fg / $fd" | bc)); pack $bg vs $bd bytes (ratio $(echo "scale=2; $bg / $bd" | bc))"
node_stop a

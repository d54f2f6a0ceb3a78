#!/usr/bin/env bash
# bench/git_http.sh - git smart HTTP from guts-node against git's own
# server (git daemon, git://, serving the same repository from a packed
# mirror), in a private network namespace: clone --mirror and a fetch of a
# few new commits, RUNS alternating runs each (median), the servers' CPU
# (guts-node's; git daemon's with the upload-pack children it reaped) and
# the node's RssAnon sampled while it serves.
#   GUTS_BUILD=build ./bench/git_http.sh [RUNS]    (a release build: not ASan)
#   BUNDLE=file.bundle ...   the repository (default ../shared/data/zlib.bundle)
#   GEN=1 ...                a generated one instead (scripts/bench-repo;
#                            COMMITS, TOUCH, FILES, REFS shape it)
#   PERF=FILE ...            after the timed clones, one more clone from the
#                            node under `perf record -g` of the node, into FILE
set -euo pipefail
RUNS=${1:-5}
export GUTS_BUILD=${GUTS_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
export GUTS_SRC=${GUTS_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
. "$GUTS_SRC/tests/e2e/lib/netns.sh"
netns_enter "$0" "$@"
export PATH="$GUTS_BUILD:$PATH"

if [ -n "${GEN:-}" ]; then
  "$GUTS_SRC/scripts/bench-repo" "$TMP/srv/zlib.git"
else
  bundle=${BUNDLE:-$GUTS_SRC/../shared/data/zlib.bundle}
  [ -f "$bundle" ] || { echo "no $bundle: skipped" >&2; exit 77; }
  git clone -q --mirror "$bundle" "$TMP/srv/zlib.git"
fi
git -C "$TMP/srv/zlib.git" repack -adq
git -C "$TMP/srv/zlib.git" pack-refs --all
expect 0 "$GUTS" --data "$TMP/a" import madler/zlib "$TMP/srv/zlib.git"
node_start a --http 127.0.0.1:7172
# git-daemon itself, not the git wrapper that would wait for it: its CPU
# counts the upload-packs it reaped
"$(git --exec-path)/git-daemon" --export-all --base-path="$TMP/srv" --reuseaddr \
  --listen=127.0.0.1 --port=9418 2>"$TMP/daemon.log" &
daemon_pid=$!
EXTRA_PIDS+=("$daemon_pid")
wait_until 10 "git daemon listens" git ls-remote git://127.0.0.1:9418/zlib.git
wait_until 10 "the node serves" git ls-remote http://127.0.0.1:7172/madler/zlib
objects=$(git -C "$TMP/srv/zlib.git" count-objects -v | awk '/in-pack/ {print $2}')
refs=$(git -C "$TMP/srv/zlib.git" for-each-ref | wc -l)

rss_peak=0
hz=$(getconf CLK_TCK)
# CPU ticks of process PID so far, with the children it has reaped
# (git daemon's upload-packs and their pack-objects).
ticks() { local f; read -ra f <"/proc/$1/stat"; echo $((f[13] + f[14] + f[15] + f[16])); }
# timed SERVER_PID CMD...: run CMD; append "wall_ms server_cpu_ms" to $out.
# With SAMPLE set, the node's RssAnon is sampled every 100 ms meanwhile
# (bash builtins: a process per sample would take the clone's CPU); the
# wall time is the command's own, not the sampler's.
timed() {
  local spid=$1 c0 peak=0 k v _
  shift
  c0=$(ticks "$spid")
  ( t0=$(date +%s%N); "$@"; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)) >"$TMP/wall" ) &
  local cpid=$!
  while [ -n "${SAMPLE:-}" ] && kill -0 "$cpid" 2>/dev/null; do
    while read -r k v _; do
      [ "$k" != RssAnon: ] || [ "$v" -le "$peak" ] || peak=$v
    done <"/proc/${NODE_PID[a]}/status"
    sleep 0.1
  done
  wait "$cpid"
  [ "$peak" -le "$rss_peak" ] || rss_peak=$peak
  echo "$(cat "$TMP/wall") $((($(ticks "$spid") - c0) * 1000 / hz))" >>"$out"
}
# median of column COL (1: wall ms, 2: server CPU ms) of a file
median() { sort -n -k"$2" "$1" | awk -v c="$2" '{a[NR]=$c} END {print a[int((NR + 1) / 2)]}'; }
ratio() { echo "scale=2; $1 / $2" | bc; }

: >"$TMP/t-guts"
: >"$TMP/t-git"
for i in $(seq 1 "$RUNS"); do
  rm -rf "$TMP/c1" "$TMP/c2"
  out="$TMP/t-guts" SAMPLE=1 timed "${NODE_PID[a]}" git clone -q --mirror http://127.0.0.1:7172/madler/zlib "$TMP/c1"
  out="$TMP/t-git" timed "$daemon_pid" git clone -q --mirror git://127.0.0.1:9418/zlib.git "$TMP/c2"
done
if [ -n "${PERF:-}" ]; then
  rm -rf "$TMP/c3"
  perf record -q -F 4000 -g -o "$PERF" -p "${NODE_PID[a]}" 2>"$TMP/perf.log" &
  perf_pid=$!
  wait_until 10 "perf attached" grep -q . "$PERF"
  git clone -q --mirror http://127.0.0.1:7172/madler/zlib "$TMP/c3"
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
fi
git -C "$TMP/c1" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of the clone from the node"
pack_guts=$(du -b "$TMP"/c1/objects/pack/*.pack | awk '{s += $1} END {print s}')
pack_git=$(du -b "$TMP"/c2/objects/pack/*.pack | awk '{s += $1} END {print s}')
cg=$(median "$TMP/t-guts" 1) cd=$(median "$TMP/t-git" 1)
sg=$(median "$TMP/t-guts" 2) sd=$(median "$TMP/t-git" 2)
echo "$(nproc) CPUs, $(git --version), $RUNS alternating runs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "clone --mirror ($objects objects, $refs refs): guts-node ${cg} ms, git daemon ${cd} ms (ratio $(ratio "$cg" "$cd")); server CPU ${sg} vs ${sd} ms; packs $pack_guts vs $pack_git bytes; node RssAnon peak ${rss_peak} kB"
echo "  per run (wall ms, server CPU ms): guts $(tr '\n' ' ' <"$TMP/t-guts")/ git $(tr '\n' ' ' <"$TMP/t-git")"

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
  out="$TMP/f-guts" timed "${NODE_PID[a]}" git -C "$TMP/f1" -c fetch.unpackLimit=1 fetch -q
  out="$TMP/f-git" timed "$daemon_pid" git -C "$TMP/f2" -c fetch.unpackLimit=1 fetch -q
  for s in 1 2; do
    b=$(eval "echo \$before$s")
    for p in "$TMP"/f$s/objects/pack/*.pack; do
      case " $b " in *" $p "*) ;; *) du -b "$p" | awk '{print $1}' >>"$TMP/b-$([ $s = 1 ] && echo guts || echo git)";; esac
    done
  done
done
fg=$(median "$TMP/f-guts" 1) fd=$(median "$TMP/f-git" 1)
bg=$(sort -n "$TMP/b-guts" | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
bd=$(sort -n "$TMP/b-git" | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
echo "fetch of 3 new commits: guts-node ${fg} ms, git daemon ${fd} ms (ratio $(ratio "$fg" "$fd")); pack $bg vs $bd bytes (ratio $(ratio "$bg" "$bd"))"
echo "  packs per run: guts $(tr '\n' ' ' <"$TMP/b-guts")/ git $(tr '\n' ' ' <"$TMP/b-git")"
node_stop a

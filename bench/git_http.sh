#!/usr/bin/env bash
# bench/git_http.sh - git smart HTTP from guts-node against git's own
# servers on the same repository (a packed mirror), in a private network
# namespace: git daemon (git://) and `git http-backend` (smart HTTP, run as
# CGI by a small Python HTTP server that passes Git-Protocol on, so both
# HTTP sides speak protocol v2). clone --mirror (from guts-node twice a
# run: its pack cache emptied first, then the pack it cached), a clone
# while the node prepares the pack of refs just pushed (with a second
# clone beside it in the last run), a clone once that pack is ready, and a fetch of a few
# new commits, RUNS alternating runs each (median), the servers' CPU
# (guts-node's; git daemon's and the CGI server's with the children they
# reaped) and the node's RssAnon sampled while it serves.
#   GUTS_BUILD=build ./bench/git_http.sh [RUNS]    (a release build: not ASan)
#   BUNDLE=file.bundle ...   the repository (default ../shared/data/zlib.bundle)
#   GEN=1 ...                a generated one instead (scripts/bench-repo;
#                            COMMITS, TOUCH, FILES, REFS shape it)
#   CLONES_ONLY=1 ...        the clones alone, no push, prepare or fetch
#   REPLICA=1 ...            instead, clones from a fresh node right after it
#                            replicated the repository, at once and once its
#                            clone packs are prepared
#   PERF=FILE ...            after the timed clones, one more clone from the
#                            node under `perf record -g` of the node, into FILE
#                            (PERF_CALLGRAPH="--call-graph dwarf": other stacks)
#   BASE_BUILD=DIR ...       with CLONES_ONLY: a second node run from DIR's
#                            build (its own import, HTTP on 7174, its own
#                            multicast group) whose cold clones alternate
#                            with the node's, to compare two builds in one run
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
if [ -n "${BASE_BUILD:-}" ]; then
  [ -n "${CLONES_ONLY:-}" ] || fail "BASE_BUILD needs CLONES_ONLY"
  expect 0 "$BASE_BUILD/guts" --data "$TMP/m" import madler/zlib "$TMP/srv/zlib.git"
  GUTS_NODE="$BASE_BUILD/guts-node" node_start m --http 127.0.0.1:7174 --group 239.255.71.99:7199 \
    --group '[ff12::7199]:7199'
fi
# git-daemon itself, not the git wrapper that would wait for it: its CPU
# counts the upload-packs it reaped
"$(git --exec-path)/git-daemon" --export-all --base-path="$TMP/srv" --reuseaddr \
  --listen=127.0.0.1 --port=9418 2>"$TMP/daemon.log" &
daemon_pid=$!
EXTRA_PIDS+=("$daemon_pid")
# git http-backend as CGI: one process per request, as under a web
# server; the request's body handed over whole (git sends it with a length,
# or chunked past http.postBuffer), the answer streamed back.
/usr/bin/python3 - "$TMP/srv" 8080 2>"$TMP/cgi.log" <<'PY' &
import http.server, os, subprocess, sys, threading
root, port = sys.argv[1], int(sys.argv[2])
class Cgi(http.server.BaseHTTPRequestHandler):
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        out = b""
        while True:
            n = int(self.rfile.readline().split(b";")[0], 16)
            out += self.rfile.read(n)
            self.rfile.readline()
            if n == 0:
                return out
    def do_GET(self):
        path, _, query = self.path.partition("?")
        data = self.body() if self.command == "POST" else b""
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": root, "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_LENGTH": str(len(data)), "REMOTE_ADDR": self.client_address[0]}
        for h, v in (("Content-Type", "CONTENT_TYPE"), ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
                     ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if self.headers.get(h):
                env[v] = self.headers[h]
        p = subprocess.Popen(["git", "http-backend"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
        def feed():
            p.stdin.write(data)
            p.stdin.close()
        t = threading.Thread(target=feed)
        t.start()
        status, head = "200 OK", []
        for line in iter(p.stdout.readline, b""):
            line = line.decode().rstrip("\r\n")
            if not line:
                break
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = v.strip()
            else:
                head.append(line)
        self.wfile.write(("HTTP/1.0 %s\r\n%s\r\n\r\n" % (status, "\r\n".join(head))).encode())
        while chunk := p.stdout.read1(65536):
            self.wfile.write(chunk)
        t.join()
        p.wait()
    do_POST = do_GET
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Cgi).serve_forever()
PY
cgi_pid=$!
EXTRA_PIDS+=("$cgi_pid")
wait_until 10 "git daemon listens" git ls-remote git://127.0.0.1:9418/zlib.git
wait_until 10 "git http-backend serves" git ls-remote http://127.0.0.1:8080/zlib.git
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
# (bash builtins: a process per sample would take the clone's CPU; the
# pause is a read that times out on a pipe nobody writes, not sleep(1),
# a process per sample that may cost the sampled clones a few percent:
# docs/performance.md, tenth pass); the wall time is the command's own,
# not the sampler's.
exec {nap_fd}<> <(:)
timed() {
  local spid=$1 c0 peak=0 k v _
  shift
  c0=$(ticks "$spid")
  ( t0=$(date +%s%N); "$@"; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)) >"$TMP/wall"; times >"$TMP/times" ) &
  local cpid=$!
  while [ -n "${SAMPLE:-}" ] && kill -0 "$cpid" 2>/dev/null; do
    while read -r k v _; do
      [ "$k" != RssAnon: ] || [ "$v" -le "$peak" ] || peak=$v
    done <"/proc/${SAMPLE_PID:-${NODE_PID[a]}}/status"
    read -rt 0.1 -u "$nap_fd" _ || :
  done
  wait "$cpid"
  [ "$peak" -le "$rss_peak" ] || rss_peak=$peak
  # the client's CPU (git and its children): times' second line, "XmY.YYYs XmY.YYYs"
  local cpu
  cpu=$(sed -n 2p "$TMP/times" | awk '{ms = 0; for (i = 1; i <= 2; i++) {split($i, a, /[ms]/); ms += (a[1] * 60 + a[2]) * 1000}; printf "%d", ms}')
  echo "$(cat "$TMP/wall") $((($(ticks "$spid") - c0) * 1000 / hz)) $cpu" >>"$out"
}
# median of column COL (1: wall ms, 2: server CPU ms) of a file
median() { sort -n -k"$2" "$1" | awk -v c="$2" '{a[NR]=$c} END {print a[int((NR + 1) / 2)]}'; }
ratio() { echo "scale=2; $1 / $2" | bc; }

# The servers: guts-node, git daemon, git http-backend (CGI); 4 is
# guts-node again with its pack cache emptied first (DATA/git-packs: a
# clone of refs it has not served whole before), 1 right after it (the
# pack it cached).
url=([1]=http://127.0.0.1:7172/madler/zlib git://127.0.0.1:9418/zlib.git http://127.0.0.1:8080/zlib.git
     http://127.0.0.1:7172/madler/zlib guts://madler/zlib "file://$TMP/srv/zlib.git"
     http://127.0.0.1:7174/madler/zlib)
spid=([1]="${NODE_PID[a]}" "$daemon_pid" "$cgi_pid" "${NODE_PID[a]}" "${NODE_PID[a]}" "${NODE_PID[a]}"
      "${NODE_PID[m]:-}")
side=([1]=guts git cgi cold helper file base)
# 7: with BASE_BUILD, the second node's cold clone (its cache emptied first)
# 5 and 6: git-remote-guts on the node's data dir (the node's cached pack,
# guts_packcache_also) against file:// of the served repository (wall only)

for s in 1 2 3 4 5 6 7; do : >"$TMP/t-${side[$s]}"; done
prepared_packs() { curl -s "${url[1]%/madler/zlib}/metrics" | awk '/^guts_git_packs_prepared_total/ {print $2}'; }
prepared_more() { [ "$(prepared_packs)" != "$1" ]; }
# every clone pack prepared (zlib's mirror and plain clones differ: two)
prepared_all() {
  prepared_more "$1" &&
    [ "$(curl -s "${url[1]%/madler/zlib}/metrics" | awk '/^guts_git_packs_preparing/ {print $2}')" = 0 ]
}
# The node prepares the imported repository's clone packs once it is quiet
# after its start: done before the first run, so that no "cold" clone
# (cache emptied first) shares the CPU with that build or follows it.
refs_of() { git -C "$1" for-each-ref; }
objects_of() { git -C "$1" cat-file --batch-all-objects --batch-check='%(objectname)'; }
pack() { du -b "$TMP"/c$1/objects/pack/*.pack | awk '{s += $1} END {print s}'; }
wait_until 60 "the node prepared its clone packs" prepared_all 0
if [ -n "${BASE_BUILD:-}" ]; then
  base_prepared() {
    [ "$(curl -s http://127.0.0.1:7174/metrics | awk '/^guts_git_packs_prepared_total/ {print $2}')" -ge 1 ] &&
      [ "$(curl -s http://127.0.0.1:7174/metrics | awk '/^guts_git_packs_preparing/ {print $2}')" = 0 ]
  }
  wait_until 60 "the base node prepared its clone packs" base_prepared
fi

if [ -n "${REPLICA:-}" ]; then
  # What a user meets on a node that has just replicated the repository:
  # a fresh node b (its own data dir, HTTP on 7173) pulls it from a; the
  # moment b's store holds a's objects and refs ("in sync", `guts status`
  # polled every 20 ms), either (odd turns) a clone from b at once, or
  # (even turns) the time until b's clone packs are prepared, then a
  # clone; git daemon's and http-backend's clones alternate with them.
  state() { "$GUTS" --data "$1" status 2>/dev/null | awk '$1 == "madler/zlib" && NF >= 5 {print $2, $4, $5; exit}'; }
  want=$(state "$TMP/a")
  [ -n "$want" ] || fail "no state of madler/zlib on a"
  burl=http://127.0.0.1:7173/madler/zlib
  b_metric() { curl -s "${burl%/madler/zlib}/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
  b_prepared() { [ "$(b_metric guts_git_packs_prepared_total)" -ge 1 ] && [ "$(b_metric guts_git_packs_preparing)" = 0 ]; }
  for f in now ready window sync git cgi; do : >"$TMP/r-$f"; done
  # fresh_b: start node b on an empty data dir and wait until it holds
  # the repository; "start-to-sync ms" appended to r-sync
  fresh_b() {
    rm -rf "$TMP/b"
    local t0 deadline=$((SECONDS + 120))
    t0=$(date +%s%N)
    node_start b --http 127.0.0.1:7173
    until [ "$(state "$TMP/b")" = "$want" ]; do
      node_alive b
      [ $SECONDS -lt $deadline ] || fail "node b did not replicate the repository"
      sleep 0.02
    done
    T_SYNC=$(date +%s%N)
    echo $(((T_SYNC - t0) / 1000000)) >>"$TMP/r-sync"
  }
  for i in $(seq 1 "$RUNS"); do
    for turn in now ready; do
      fresh_b
      if [ $turn = ready ]; then
        wait_until 60 "node b prepared its clone packs" b_prepared
        echo $((($(date +%s%N) - T_SYNC) / 1000000)) >>"$TMP/r-window"
      fi
      rm -rf "$TMP/r-c"
      peak0=$rss_peak rss_peak=0
      out="$TMP/r-$turn" SAMPLE=1 SAMPLE_PID="${NODE_PID[b]}" timed "${NODE_PID[b]}" git clone -q --mirror "$burl" "$TMP/r-c"
      echo "$rss_peak" >>"$TMP/r-rss-$turn"
      [ "$rss_peak" -ge "$peak0" ] || rss_peak=$peak0
      git -C "$TMP/r-c" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of the clone from node b ($turn)"
      node_stop b
      mv "$TMP/r-c" "$TMP/r-c-$turn"
      du -b "$TMP"/r-c-$turn/objects/pack/*.pack | awk '{print $1}' >"$TMP/r-pack-$turn"
      s=2 && [ $turn = ready ] && s=3
      rm -rf "$TMP/c$s"
      out="$TMP/r-${side[$s]}" timed "${spid[$s]}" git clone -q --mirror "${url[$s]}" "$TMP/c$s"
    done
    for turn in now ready; do
      [ "$(refs_of "$TMP/r-c-$turn")" = "$(refs_of "$TMP/c2")" ] || fail "refs of the clone from node b ($turn) and git daemon's differ"
      [ "$(objects_of "$TMP/r-c-$turn")" = "$(objects_of "$TMP/c2")" ] || fail "objects of the clone from node b ($turn) and git daemon's differ"
      rm -rf "$TMP/r-c-$turn"
    done
  done
  m() { median "$TMP/r-$1" "$2"; }
  echo "$(nproc) CPUs, $(git --version), $RUNS alternating runs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "fresh node b ($objects objects, $refs refs): in sync $(m sync 1) ms after its start; its clone packs prepared $(m window 1) ms after that"
  echo "clone --mirror from b, wall (server CPU, client CPU) ms: at once $(m now 1) ($(m now 2), $(m now 3)), once prepared $(m ready 1) ($(m ready 2), $(m ready 3)); git daemon $(m git 1) ($(m git 2), $(m git 3)), git http-backend $(m cgi 1) ($(m cgi 2), $(m cgi 3))"
  echo "  ratios to git daemon / http-backend: at once $(ratio "$(m now 1)" "$(m git 1)") / $(ratio "$(m now 1)" "$(m cgi 1)"), once prepared $(ratio "$(m ready 1)" "$(m git 1)") / $(ratio "$(m ready 1)" "$(m cgi 1)")"
  echo "  packs (last run): at once $(cat "$TMP/r-pack-now") B, once prepared $(cat "$TMP/r-pack-ready") B, git's $(pack 2) B; node b RssAnon peak ${rss_peak} kB (per run, at once: $(tr '\n' ' ' <"$TMP/r-rss-now"); once prepared: $(tr '\n' ' ' <"$TMP/r-rss-ready"))"
  for f in sync window; do echo "  per run ($f ms): $(tr '\n' ' ' <"$TMP/r-$f")"; done
  for f in now ready git cgi; do echo "  per run (wall ms, server CPU ms, client CPU ms) $f: $(tr '\n' ' ' <"$TMP/r-$f")"; done
  node_stop a
  exit 0
fi
order="4 1 2 3 5 6"
for i in $(seq 1 "$RUNS"); do
  # with BASE_BUILD, the two nodes' cold clones first, in turn
  [ -z "${BASE_BUILD:-}" ] || order=$([ $((i % 2)) = 1 ] && echo "4 7 1 2 3 5 6" || echo "7 4 1 2 3 5 6")
  for s in $order; do
    rm -rf "$TMP/c$s"
    [ $s != 4 ] || rm -rf "$TMP/a/git-packs"
    [ $s != 7 ] || { rm -rf "$TMP/m/git-packs"; peak0=$rss_peak rss_peak=${base_peak:-0}; }
    # the node's clones are sampled (RssAnon), and so is the base node's:
    # the sampler's own CPU then weighs on both builds alike
    out="$TMP/t-${side[$s]}" SAMPLE=$([ "${spid[$s]}" = "${NODE_PID[a]}" ] || [ $s = 7 ] && echo 1) \
      SAMPLE_PID=${spid[$s]} timed "${spid[$s]}" \
      env GUTS_DATA="$TMP/a" git clone -q --mirror "${url[$s]}" "$TMP/c$s"
    [ $s != 7 ] || { base_peak=$rss_peak rss_peak=$peak0; }
  done
done
if [ -n "${PERF:-}" ]; then
  rm -rf "$TMP/a/git-packs"
  perf record -q -F 4000 ${PERF_CALLGRAPH:--g} -o "$PERF" -p "${NODE_PID[a]}" 2>"$TMP/perf.log" &
  perf_pid=$!
  wait_until 10 "perf attached" grep -q . "$PERF"
  git clone -q --mirror "${url[1]}" "$TMP/c-perf"
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
fi
for s in 1 4 $([ -z "${BASE_BUILD:-}" ] || echo 7); do
  git -C "$TMP/c$s" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of the clone from the node ($s)"
done
# refs and objects: the same in the three clones (last run's)
same() {
  local what=$1 s
  shift
  for s in 2 3 4 5 6 $([ -z "${BASE_BUILD:-}" ] || echo 7); do
    [ "$("$@" "$TMP/c1")" = "$("$@" "$TMP/c$s")" ] || fail "$what of the clones from the node and ${side[$s]} differ"
  done
}
same refs refs_of
same objects objects_of
m() { median "$TMP/t-$1" "$2"; }
echo "$(nproc) CPUs, $(git --version), $RUNS alternating runs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "clone --mirror ($objects objects, $refs refs), wall: guts-node $(m guts 1) ms (pack cached), $(m cold 1) ms (cache empty), git daemon $(m git 1) ms, git http-backend $(m cgi 1) ms"
echo "  ratios to git daemon: $(ratio "$(m guts 1)" "$(m git 1)") cached, $(ratio "$(m cold 1)" "$(m git 1)") cache empty; to git http-backend: $(ratio "$(m guts 1)" "$(m cgi 1)") cached, $(ratio "$(m cold 1)" "$(m cgi 1)") cache empty"
echo "  client CPU $(m guts 3) (cached) / $(m cold 3) (cache empty) / $(m git 3) / $(m cgi 3) ms"
echo "  server CPU $(m guts 2) (cached) / $(m cold 2) (cache empty) / $(m git 2) / $(m cgi 2) ms; packs $(pack 1) / $(pack 4) / $(pack 2) / $(pack 3) bytes; node RssAnon peak ${rss_peak} kB"
for s in 4 1 2 3; do echo "  per run (wall ms, server CPU ms, client CPU ms) ${side[$s]}: $(tr '\n' ' ' <"$TMP/t-${side[$s]}")"; done
echo "clone --mirror guts:// (git-remote-guts, the node's pack) $(m helper 1) ms, file:// $(m file 1) ms: ratio $(ratio "$(m helper 1)" "$(m file 1)")"
for s in 5 6; do echo "  per run (wall ms) ${side[$s]}: $(cut -d' ' -f1 "$TMP/t-${side[$s]}" | tr '\n' ' ')"; done
if [ -n "${BASE_BUILD:-}" ]; then
  echo "base build ($BASE_BUILD), cache empty: $(m base 1) ms (server CPU $(m base 2), client CPU $(m base 3); RssAnon peak ${base_peak:-0} kB); ratios to git daemon $(ratio "$(m base 1)" "$(m git 1)"), to http-backend $(ratio "$(m base 1)" "$(m cgi 1)"); this build / base $(ratio "$(m cold 1)" "$(m base 1)"); pack $(pack 7) bytes"
  echo "  per run (wall ms, server CPU ms, client CPU ms) base: $(tr '\n' ' ' <"$TMP/t-base")"
  node_stop m
fi
[ -z "${CLONES_ONLY:-}" ] || { node_stop a; exit 0; }

# a fetch of three new commits, each side from a clone made before them
# (from the second run on, each side's clone before the fetch is the first
# clone after a push: the node's pack cache has the previous refs' pack)
for s in 1 2 3; do : >"$TMP/f-${side[$s]}"; : >"$TMP/b-${side[$s]}"; : >"$TMP/p-${side[$s]}"; done
: >"$TMP/d-guts"
# a pack being written (.R-K.PID-N) or one prepared since
preparing() { ls -a "$TMP/a/git-packs" | grep -q '^\..*-' || prepared_more "$1"; }
work="$TMP/work"
git clone -q "$TMP/srv/zlib.git" "$work"
for i in $(seq 1 "$RUNS"); do
  for s in 1 2 3; do
    rm -rf "$TMP/f$s"
    out=$([ "$i" = 1 ] && echo /dev/null || echo "$TMP/p-${side[$s]}") \
      SAMPLE=$([ $s = 1 ] && echo 1) timed "${spid[$s]}" git clone -q --mirror "${url[$s]}" "$TMP/f$s"
  done
  for k in 1 2 3; do
    printf 'bench %s %s\n' "$i" "$k" >>"$work/README"
    seq 1 $((k * 100)) >"$work/bench-$k.txt"
    git -C "$work" add -A && git -C "$work" commit -qm "bench $i $k"
  done
  git -C "$work" push -q origin HEAD
  rm -rf "$TMP/a/git-packs" # the prepare encodes every object: no earlier pack to start from
  prepared=$(prepared_packs)
  expect 0 "$GUTS" --data "$TMP/a" import madler/zlib "$TMP/srv/zlib.git"
  wait_until 10 "the node has the new commits" sh -c \
    "git ls-remote ${url[1]} | grep -q $(git -C "$work" rev-parse HEAD)"
  # the node prepares the new refs' pack once the repository is quiet for
  # 2 s: a clone as it starts (from the last run on, a second one beside
  # it, for RssAnon), then the next run's clones once it is ready
  wait_until 30 "the node starts preparing" preparing "$prepared"
  rm -rf "$TMP/d1" "$TMP/d2"
  other=
  if [ "$i" = "$RUNS" ]; then
    git clone -q --mirror "${url[1]}" "$TMP/d2" &
    other=$!
  fi
  out="$TMP/d-guts" SAMPLE=1 timed "${spid[1]}" git clone -q --mirror "${url[1]}" "$TMP/d1"
  [ -z "$other" ] || wait "$other" || fail "the second clone during the prepare"
  wait_until 60 "the node prepared the new refs' packs" prepared_all "$prepared"
  for s in 1 2 3; do
    before=$(ls "$TMP"/f$s/objects/pack/*.pack)
    out="$TMP/f-${side[$s]}" timed "${spid[$s]}" git -C "$TMP/f$s" -c fetch.unpackLimit=1 fetch -q
    for p in "$TMP"/f$s/objects/pack/*.pack; do
      case " $before " in *" $p "*) ;; *) du -b "$p" | awk '{print $1}' >>"$TMP/b-${side[$s]}" ;; esac
    done
  done
done
git -C "$TMP/f1" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of the last clone from the node after a push"
for d in d1 $([ "$RUNS" -gt 1 ] && echo d2); do
  git -C "$TMP/$d" fsck --strict --no-progress >/dev/null 2>&1 || fail "fsck of a clone during the prepare ($d)"
  [ "$(objects_of "$TMP/$d")" = "$(objects_of "$TMP/f2")" ] || fail "objects of a clone during the prepare ($d) differ"
done
[ "$(objects_of "$TMP/f1")" = "$(objects_of "$TMP/f2")" ] || fail "objects of the last clones after a push differ"
if [ "$RUNS" -gt 1 ]; then
  pm() { median "$TMP/p-$1" "$2"; }
  dm=$(median "$TMP/d-guts" 1)
  echo "clone --mirror as the node starts preparing a push's pack (from no earlier pack; the last run beside a second clone): guts-node $dm ms (ratio to the clones below: $(ratio "$dm" "$(pm git 1)") git daemon, $(ratio "$dm" "$(pm cgi 1)") git http-backend); server CPU $(median "$TMP/d-guts" 2) ms; node RssAnon peak ${rss_peak} kB"
  echo "  per run (wall ms, server CPU ms): $(tr '\n' ' ' <"$TMP/d-guts")"
  echo "clone --mirror once the node prepared a push's pack: guts-node $(pm guts 1) ms, git daemon $(pm git 1) ms (ratio $(ratio "$(pm guts 1)" "$(pm git 1)")), git http-backend $(pm cgi 1) ms (ratio $(ratio "$(pm guts 1)" "$(pm cgi 1)")); server CPU $(pm guts 2) / $(pm git 2) / $(pm cgi 2) ms"
  for s in 1 2 3; do echo "  per run (wall ms, server CPU ms) ${side[$s]}: $(tr '\n' ' ' <"$TMP/p-${side[$s]}")"; done
fi
fm() { median "$TMP/f-$1" 1; }
bm() { sort -n "$TMP/b-$1" | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
echo "fetch of 3 new commits: guts-node $(fm guts) ms, git daemon $(fm git) ms (ratio $(ratio "$(fm guts)" "$(fm git)")), git http-backend $(fm cgi) ms (ratio $(ratio "$(fm guts)" "$(fm cgi)"))"
echo "  packs $(bm guts) / $(bm git) / $(bm cgi) bytes (ratios $(ratio "$(bm guts)" "$(bm git)"), $(ratio "$(bm guts)" "$(bm cgi)"))"
for s in 1 2 3; do echo "  packs per run ${side[$s]}: $(tr '\n' ' ' <"$TMP/b-${side[$s]}")"; done
node_stop a

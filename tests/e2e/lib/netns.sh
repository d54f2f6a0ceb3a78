# netns.sh - helpers for guts-node end-to-end tests (sourced, not run).
#
# Every multicast or multi-process test runs inside a private network
# namespace that it creates itself, so nothing it sends can reach the host's
# interfaces or anyone else's group:
#
#   . "$(dirname "$0")/lib/netns.sh"
#   netns_enter "$0" "$@"        # re-execs the script under unshare -n
#
# Inside, lo is up with multicast and 224.0.0.0/4 routes to it. The script
# then starts nodes with node_start (pids recorded), waits with wait_until
# (polls against a deadline, never a fixed sleep) and stops nodes by pid;
# the EXIT trap kills whatever is left, by recorded pid only.
#
# A test that cannot create a namespace exits 77 (skipped).

# Seconds a graceful stop may take before the node counts as hung.
NETNS_STOP_TIMEOUT=${NETNS_STOP_TIMEOUT:-15}

netns_enter() {
  local script=$1; shift
  if [ "${GUTS_NETNS_INSIDE:-}" != 1 ]; then
    # NETNS_MOUNT=1: a private mount namespace too (for netns_tmpfs)
    local outer flags=-n
    [ -z "${NETNS_MOUNT:-}" ] || flags=-nm
    local unshare=(unshare "$flags")
    [ "$(id -u)" = 0 ] || unshare=(unshare -r "$flags")
    if ! "${unshare[@]}" true 2>/dev/null; then
      echo "cannot create a network namespace (${unshare[*]}): skipped" >&2
      exit 77
    fi
    outer=$(readlink /proc/self/ns/net)
    GUTS_NETNS_INSIDE=1 GUTS_NETNS_OUTER="$outer" exec "${unshare[@]}" -- bash "$script" "$@"
  fi
  # Refuse to run anything on the host's network.
  if [ -z "${GUTS_NETNS_OUTER:-}" ] || [ "$(readlink /proc/self/ns/net)" = "$GUTS_NETNS_OUTER" ]; then
    echo "netns_enter: not inside a private network namespace: refusing" >&2
    exit 1
  fi
  ip link set lo up multicast on || { echo "cannot bring lo up: skipped" >&2; exit 77; }
  ip route add 224.0.0.0/4 dev lo 2>/dev/null || true
  # Only now (inside): the shared CLI helpers make TMP, HOME, git identity.
  # shellcheck source=../lib.bash
  . "$NETNS_LIB_DIR/../lib.bash"
  GUTS_NODE="$GUTS_BUILD/guts-node"
  [ -x "$GUTS_NODE" ] || { echo "no $GUTS_NODE: build it first" >&2; exit 1; }
  trap netns_cleanup EXIT
}

NETNS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
declare -A NODE_PID=()
declare -A NODE_ARGS=()
declare -A NODE_NS=()
EXTRA_PIDS=()
NETNS_NAMED=()
NETNS_MOUNTS=()

# netns_tmpfs DIR BYTES: mount a tmpfs of BYTES on DIR (made if absent);
# needs NETNS_MOUNT=1 before netns_enter. Skips (77) where mounting is not
# allowed; unmounted by the EXIT trap.
netns_tmpfs() {
  mkdir -p "$1"
  mount -t tmpfs -o "size=$2,mode=0700" tmpfs "$1" || { echo "cannot mount a tmpfs: skipped" >&2; exit 77; }
  NETNS_MOUNTS+=("$1")
}

# Stop every process we started (by pid), show node logs on failure, remove TMP.
netns_cleanup() {
  local rc=$? name pid
  for name in "${!NODE_PID[@]}"; do
    pid=${NODE_PID[$name]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${EXTRA_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 5))
  for name in "${!NODE_PID[@]}"; do
    pid=${NODE_PID[$name]}
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  for pid in "${EXTRA_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for name in "${NETNS_NAMED[@]}"; do ip netns del "$name" 2>/dev/null || true; done
  for name in "${NETNS_MOUNTS[@]}"; do umount "$name" 2>/dev/null || true; done
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    for f in "$TMP"/*.log; do
      [ -f "$f" ] || continue
      echo "---- tail of $f" >&2
      tail -n 40 "$f" >&2
    done
  fi
  if [ -n "${GUTS_KEEP:-}" ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit $rc
}

# Announce interval for tests: short, so convergence takes seconds.
NODE_INTERVAL_MS=${NODE_INTERVAL_MS:-200}

# Interface node_start joins the group on; NODE_IFACE= (empty) gives no
# --iface at all (the kernel's route decides, as for a user).
NODE_IFACE=${NODE_IFACE-lo}

# node_start NAME [ARGS...]: start a node on data dir $TMP/NAME, log in
# $TMP/NAME.log; ARGS are remembered for node_restart. Nodes start with
# --http off (several nodes in one namespace would all want 127.0.0.1:7172);
# a test that wants the page passes its own --http, which comes later and wins.
node_start() {
  local name=$1; shift
  NODE_ARGS[$name]="$*"
  local ifarg=()
  [ -z "$NODE_IFACE" ] || ifarg=(--iface "$NODE_IFACE")
  "$GUTS_NODE" --data "$TMP/$name" "${ifarg[@]}" --interval-ms "$NODE_INTERVAL_MS" \
    --log-level "${NODE_LOG_LEVEL:-info}" --http off "$@" 2>>"$TMP/$name.log" &
  NODE_PID[$name]=$!
}

# node_start_ns NETNS IFACE NAME [ARGS...]: like node_start, inside the named
# network namespace NETNS (made by netns_add), joined on IFACE.
node_start_ns() {
  local ns=$1 iface=$2 name=$3; shift 3
  NODE_NS[$name]="$ns $iface"
  NODE_ARGS[$name]="$*"
  ip netns exec "$ns" "$GUTS_NODE" --data "$TMP/$name" --iface "$iface" \
    --interval-ms "$NODE_INTERVAL_MS" --log-level "${NODE_LOG_LEVEL:-info}" --http off "$@" \
    2>>"$TMP/$name.log" &
  NODE_PID[$name]=$!
}

# node_restart NAME: start again with the same arguments (and namespace).
node_restart() {
  local name=$1
  if [ -n "${NODE_NS[$name]:-}" ]; then
    # shellcheck disable=SC2086
    node_start_ns ${NODE_NS[$name]} "$name" ${NODE_ARGS[$name]}
  else
    # shellcheck disable=SC2086
    node_start "$name" ${NODE_ARGS[$name]}
  fi
}

# netns_add NAME: a named network namespace (ip netns add), deleted by the
# EXIT trap. Names carry the test's pid so parallel runs never collide.
netns_add() {
  ip netns add "$1" || { echo "ip netns add $1 failed: skipped" >&2; exit 77; }
  NETNS_NAMED+=("$1")
  ip -n "$1" link set lo up
}

# seed_leg I NS [RATE]: a named namespace NS joined to this one by a veth
# pair, gspI here (10.74.I.1/24) and v0 there (10.74.I.2/24); with RATE
# (a tc rate, e.g. 10mbit), what NS sends on v0 (its upload) is capped by a
# token bucket. Nothing forwards between two legs: each NS sees only us.
seed_leg() {
  local i=$1 ns=$2 rate=${3:-}
  netns_add "$ns"
  ip link add "gsp$i" type veth peer name v0 netns "$ns" || { echo "no veth: skipped" >&2; exit 77; }
  ip addr add "10.74.$i.1/24" dev "gsp$i"
  ip link set "gsp$i" up multicast on
  ip -n "$ns" addr add "10.74.$i.2/24" dev v0
  ip -n "$ns" link set v0 up multicast on
  [ -z "$rate" ] || ip netns exec "$ns" tc qdisc add dev v0 root tbf rate "$rate" burst 32kb latency 400ms ||
    { echo "tc cannot cap v0 in $ns: skipped" >&2; exit 77; }
}

# gen_repo DIR COMMITS FILES BYTES: a bare repository made by git
# fast-import: COMMITS commits, each adding FILES files of BYTES random
# (incompressible, seeded) bytes in a directory of its own; an annotated
# tag on the last commit and a branch at the middle one.
gen_repo() {
  git init -q --bare "$1"
  /usr/bin/python3 - "$2" "$3" "$4" <<'PY' | git -C "$1" fast-import --quiet
import random, sys
commits, files, size = map(int, sys.argv[1:4])
rng = random.Random(7)
out = sys.stdout.buffer
for c in range(1, commits + 1):
    out.write(b"commit refs/heads/main\nmark :%d\n" % c)
    out.write(b"committer T <t@example.com> %d +0000\n" % (1700000000 + c))
    msg = b"commit %d\n" % c
    out.write(b"data %d\n%s" % (len(msg), msg))
    if c > 1:
        out.write(b"from :%d\n" % (c - 1))
    for f in range(files):
        data = rng.randbytes(size)
        out.write(b"M 100644 inline c%d/f%d\ndata %d\n%s\n" % (c, f, len(data), data))
    out.write(b"\n")
out.write(b"reset refs/heads/half\nfrom :%d\n\n" % max(1, commits // 2))
out.write(b"tag v1\nfrom :%d\ntagger T <t@example.com> 1800000000 +0000\ndata 3\nv1\n" % commits)
PY
  git -C "$1" symbolic-ref HEAD refs/heads/main
}

# three_seeds KEY RATE: the split-pull tests' cluster. A repository (1,801
# objects, about 3 MB) imported once into s1 and copied to s2 and s3 (the
# seeds hold the same ref records), each seed a node in a namespace of its
# own behind a capped leg (seed_leg), and a fresh node f on every
# interface here. Leaves the source in $TMP/src.git.
three_seeds() {
  local key=$1 rate=$2 i
  gen_repo "$TMP/src.git" 100 15 2048
  expect 0 "$GUTS" --data "$TMP/s1" import "$key" "$TMP/src.git"
  for i in 1 2 3; do
    seed_leg "$i" "guts-e2e-$$-s$i" "$rate"
    [ "$i" = 1 ] || { mkdir -p "$TMP/s$i" && cp -a "$TMP/s1/repos" "$TMP/s$i/"; }
  done
  for i in 1 2 3; do node_start_ns "guts-e2e-$$-s$i" v0 "s$i"; done
  for i in 1 2 3; do wait_until 20 "s$i writes its status" test -s "$TMP/s$i/node/status.json"; done
  NODE_IFACE= node_start f
}

# seed_pulled_from: waits (60 s at most) until f holds connections to two
# of three_seeds' seeds; sets VICTIM to the last of them and NPULL to how
# many f pulls from.
seed_pulled_from() {
  local deadline=$((SECONDS + 60)) i last
  VICTIM=
  while [ -z "$VICTIM" ]; do
    node_alive f
    [ $SECONDS -lt $deadline ] || fail "f did not pull from two seeds within 60 s"
    NPULL=0 last=
    for i in 1 2 3; do
      if [ -n "$(ss -Htn state established dst "10.74.$i.2")" ]; then NPULL=$((NPULL + 1)); last=$i; fi
    done
    [ "$NPULL" -ge 2 ] && VICTIM=$last
    sleep 0.05
  done
}

# node_stop NAME: SIGTERM, wait (bounded), require exit status 0.
node_stop() {
  local name=$1 pid=${NODE_PID[$1]} rc=0 deadline=$((SECONDS + NETNS_STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || fail "node $name (pid $pid) is not running"
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "node $name did not exit within ${NETNS_STOP_TIMEOUT}s of SIGTERM"
    sleep 0.05
  done
  wait "$pid" || rc=$?
  unset "NODE_PID[$name]"
  [ $rc -eq 0 ] || fail "node $name exited $rc after SIGTERM"
}

# node_kill9 NAME: SIGKILL and reap.
node_kill9() {
  local name=$1 pid=${NODE_PID[$1]}
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "NODE_PID[$name]"
}

# node_alive NAME: fail unless the node is running.
node_alive() {
  kill -0 "${NODE_PID[$1]}" 2>/dev/null || fail "node $1 died (see $TMP/$1.log)"
}

# wait_until SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds;
# fail with WHAT after SECONDS. Nodes must stay alive meanwhile.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs)) name
  until "$@" >/dev/null 2>&1; do
    for name in "${!NODE_PID[@]}"; do node_alive "$name"; done
    [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s: $what"
    sleep 0.1
  done
}

# repo_state DATA KEY: "objects fingerprint refs_digest" of KEY in DATA, from
# `guts status --json` (empty when absent, the data dir included: status
# does not create one).
repo_state() {
  local json
  json=$("$GUTS" --data "$1" status --json 2>/dev/null) || return 0
  printf '%s' "$json" | /usr/bin/python3 -c '
import json, sys
key = sys.argv[1]
for r in json.load(sys.stdin).get("repos", []):
    if r["key"] == key:
        print(r["objects"], r["fingerprint"], r["refs_digest"])' "$2"
}

# repos_equal KEY DATA...: KEY present with equal objects, refs and digests in all.
repos_equal() {
  local key=$1 first="" d s; shift
  for d in "$@"; do
    s=$(repo_state "$d" "$key")
    [ -n "$s" ] || return 1
    if [ -z "$first" ]; then first=$s; elif [ "$s" != "$first" ]; then return 1; fi
  done
}

# node_status NAME FIELD: a top-level value of the node's status.json.
node_status_peers() {
  /usr/bin/python3 -c '
import json, sys
print(len(json.load(open(sys.argv[1]))["peers"]))' "$TMP/$1/node/status.json" 2>/dev/null
}

# peers_at_least NAME N: the node's status.json lists at least N peers.
peers_at_least() {
  local n
  n=$(node_status_peers "$1") || return 1
  [ -n "$n" ] && [ "$n" -ge "$2" ]
}

# node_counter NAME COUNTER: a counter of the node's status.json (written
# about once a second), 0 before the first write.
node_counter() {
  local v
  v=$(grep -o "\"$2\": [0-9]*" "$TMP/$1/node/status.json" 2>/dev/null | grep -o '[0-9]*$')
  echo "${v:-0}"
}

# sessions_ended NAME: pulls the node has finished, ok or failed.
sessions_ended() { echo $(($(node_counter "$1" sessions_ok) + $(node_counter "$1" sessions_failed))); }

# counter_at_least NAME COUNTER N (COUNTER may be sessions_ended).
counter_at_least() {
  local v
  if [ "$2" = sessions_ended ]; then v=$(sessions_ended "$1"); else v=$(node_counter "$1" "$2"); fi
  [ "$v" -ge "$3" ]
}

# export_check NAME KEY SRC: export KEY from node NAME's data dir, git fsck
# --strict it and compare it with the git repository SRC.
export_check() {
  local name=$1 key=$2 src=$3 out
  out="$TMP/export-$name-$RANDOM"
  rm -rf "$out"
  expect 0 "$GUTS" --data "$TMP/$name" export "$key" "$out"
  git -C "$out" fsck --strict --full --no-progress >/dev/null 2>&1 || fail "git fsck --strict of $key exported from $name"
  same_repo "$src" "$out"
}

# make_repo DIR [COMMITS]: a small real git repository: several commits on
# two branches, a merge, an annotated tag, a binary, a subdirectory.
make_repo() {
  local dir=$1 n=${2:-5} i
  git init -q "$dir"
  (
    cd "$dir"
    mkdir -p sub
    printf 'hello\n' >README
    head -c 20000 /dev/urandom >blob.bin
    git add -A && git commit -q -m first
    for i in $(seq 1 "$n"); do
      seq 1 $((i * 300)) >sub/numbers.txt
      printf 'line %d\n' "$i" >>README
      git add -A && git commit -q -m "main $i"
    done
    git tag -a v1 -m "tag v1"
    git checkout -q -b feature
    printf 'feature\n' >feature.txt
    git add -A && git commit -q -m feature
    git checkout -q main
    git merge -q --no-ff -m merge feature
  )
}

# add_commit DIR MESSAGE: one more commit on the current branch.
add_commit() {
  (cd "$1" && printf '%s\n' "$2" >>README && git commit -q -am "$2")
}

# Drop every IPv4 multicast datagram in and out of this namespace (a
# firewall that blocks multicast, as on client-isolated Wi-Fi). Returns
# nonzero when nft is missing or refuses the ruleset.
block_multicast() {
  command -v nft >/dev/null || return 1
  nft -f - <<'NFT'
table inet nomcast {
  chain out { type filter hook output priority 0; ip daddr 224.0.0.0/4 drop; }
  chain in { type filter hook input priority 0; ip daddr 224.0.0.0/4 drop; }
}
NFT
}

#!/usr/bin/env bash
# A running node survives hostile input on the LAN (issue 7, "Live bad
# input"). Inside a private network namespace, node a (holding a real
# repository) gets tens of thousands of random and mutated datagrams, by
# multicast and unicast: truncated and bit-flipped messages, oversized ones,
# wrong types, huge array and string lengths, announces naming keys such as
# ../../etc, and hundreds of TCP connections carrying garbage: random bytes,
# frame headers claiming 4 GiB, frames cut short, valid HELLOs followed by
# junk, connections that say nothing. Then: a is alive, its anonymous memory
# grew by a bounded amount, nothing appeared outside its data dir (and no
# repository directory has a bad name), and a fresh node b still
# replicates the repository from it and exports it fsck-clean.
# Sizes: GUTS_BADINPUT_DGRAMS (default 30000), GUTS_BADINPUT_CONNS (300).
set -euo pipefail
. "$(dirname "$0")/lib/netns.sh"
netns_enter "$0" "$@"

DGRAMS=${GUTS_BADINPUT_DGRAMS:-30000}
CONNS=${GUTS_BADINPUT_CONNS:-300}
# Growth of a's RssAnon allowed across the flood: its buffers are bounded by
# 64 connections x (64 KiB read buffer + a frame) and the peer and repository
# tables; 128 MiB is far above what the caps allow and far below a leak of
# one allocation per datagram or connection.
RSS_GROWTH_MAX_KB=$((128 * 1024))
PORT_A=7301
WVEC="${GUTS_SRC:-$(dirname "$0")/../..}/tests/wire_vectors"

src="$TMP/src"
make_repo "$src" 4
expect 0 "$GUTS" --data "$TMP/a" import alice/repo "$src"
# The per-source rate limits are off for a: this test is about what the
# decoder and the stream code survive, so every datagram and connection must
# reach them (node_ratelimit.sh tests the limits).
node_start a --listen 127.0.0.1:$PORT_A --max-dgram-rate 0 --max-conn-rate 0
wait_until 20 "a writes its status" test -f "$TMP/a/node/status.json"
pid_a=${NODE_PID[a]}
rss_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
rss0=$(rss_kb "$pid_a")
touch "$TMP/marker"
sleep 0.2

cat >"$TMP/flood.py" <<'PY'
import os, random, socket, struct, sys, time

port, ndgrams, nconns, wvec = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(7)
vectors = [open(os.path.join(wvec, f), "rb").read() for f in sorted(os.listdir(wvec))]

def pack(v):
    if v is None: return b"\xc0"
    if isinstance(v, int):
        for lim, hdr, fmt in ((128, b"", ">B"), (1 << 8, b"\xcc", ">B"), (1 << 16, b"\xcd", ">H"),
                              (1 << 32, b"\xce", ">I"), (1 << 64, b"\xcf", ">Q")):
            if v < lim: return hdr + struct.pack(fmt, v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, bytes): return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        return (bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))) + b"".join(pack(x) for x in v)
    raise TypeError(v)

def env(t, body, sender=None):
    return pack([0x47555453, 1, t, sender or os.urandom(16), body])

BAD_KEYS = ["../../etc", "../../etc/passwd", "a/..", "/etc/passwd", ".hidden/x", "a/.git",
            "x/" + "y" * 150, "a//b", "a/b/c", "a\\b/c", "..", "a/b\x00c", "ow ner/x", "a/.",
            "%2e%2e/etc", "a/" + "\u00e9" * 3, "", "/", "a/", "/b"]

def announce(keys, sender=None, port=9):
    return env(1, [1, port, 1000, 0, 1, [[k, 5, os.urandom(16), 1, None] for k in keys]], sender)

def mutate(b):
    b = bytearray(b)
    op = rng.randrange(6)
    if op == 0 and len(b) > 1:  # truncate
        return bytes(b[:rng.randrange(1, len(b))])
    if op == 1:  # flip bytes
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if op == 2:  # huge length somewhere
        i = rng.randrange(len(b))
        return bytes(b[:i]) + rng.choice([b"\xdd\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff",
                                          b"\xdb\x7f\xff\xff\xff", b"\xdc\xff\xff"]) + bytes(b[i:])
    if op == 3:  # wrong type byte
        if len(b) > 7: b[7] = rng.randrange(256)
        return bytes(b)
    if op == 4:  # append junk
        return bytes(b) + os.urandom(rng.randrange(1, 64))
    return bytes(b) + bytes(b)  # doubled

def dgram(i):
    k = i % 10
    if k == 0: return os.urandom(rng.randrange(0, 1400))
    if k == 1: return os.urandom(rng.randrange(1401, 9000))  # oversized
    if k == 2: return announce([rng.choice(BAD_KEYS) for _ in range(rng.randrange(1, 4))])
    if k == 3: return b"\xdd\xff\xff\xff\xff" * rng.randrange(1, 50)
    if k == 4: return env(rng.randrange(256), [rng.randrange(1 << 32)] * rng.randrange(8))
    return mutate(rng.choice(vectors))

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
u.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
targets = [("239.255.71.71", 7171), ("127.0.0.1", port)]
sent = 0
for i in range(ndgrams):
    d = dgram(i)
    try:
        u.sendto(d, targets[i & 1])
        sent += 1
    except OSError:
        pass  # e.g. EMSGSIZE for the largest; the kernel's business
    if i % 500 == 499:
        time.sleep(0.01)  # let the node's socket buffer drain a little
# A few well-formed announces of repositories that do not exist anywhere, from
# made-up nodes: the node may create them (inside its data dir) and try to
# pull from a port nobody listens on.
for i in range(20):
    u.sendto(announce(["evil/r%d" % i], port=9), targets[1])

def conn_payload(i):
    k = i % 8
    if k == 0: return os.urandom(rng.randrange(1, 5000))
    if k == 1: return b"\xff\xff\xff\xff" + os.urandom(100)              # 4 GiB frame header
    if k == 2: return struct.pack(">I", 1 << 20) + os.urandom(1000)      # frame cut short
    if k == 3:
        h = vectors[2]
        return struct.pack(">I", len(h)) + h + os.urandom(rng.randrange(1, 3000))
    if k == 4:
        out = b""
        for _ in range(rng.randrange(1, 20)):
            m = mutate(rng.choice(vectors))
            out += struct.pack(">I", len(m)) + m
        return out
    if k == 5: return struct.pack(">I", 0) * 10                          # zero-length frames
    if k == 6: return b""                                                # says nothing
    h = vectors[2]
    return (struct.pack(">I", len(h)) + h) * 200                         # HELLO storm

opened = 0
held = []
for i in range(nconns):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        opened += 1
        s.settimeout(0.5)
        p = conn_payload(i)
        if p:
            try:
                s.sendall(p)
            except OSError:
                pass
        if i % 8 == 6 and len(held) < 100:
            held.append(s)  # idle connections held open for a while
        else:
            s.close()
    except OSError:
        pass
time.sleep(1.0)
for s in held:
    s.close()
print("sent %d datagrams, opened %d connections" % (sent, opened))
PY
/usr/bin/python3 "$TMP/flood.py" "$PORT_A" "$DGRAMS" "$CONNS" "$WVEC"
sleep 1
node_alive a
rss1=$(rss_kb "$pid_a")
echo "a RssAnon: ${rss0} kB before, ${rss1} kB after"
[ $((rss1 - rss0)) -le $RSS_GROWTH_MAX_KB ] || fail "a's RssAnon grew by $((rss1 - rss0)) kB"
# The flood reached the node (the kernel may drop some datagrams; status.json
# is rewritten every second).
counted() {
  /usr/bin/python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["counters"]
n = c["dgrams_in"] + c.get("udp_rx_oversize", 0)
print("a counted %d datagrams in (%d malformed, %d dropped as oversized), %d connections accepted"
      % (n, c["dgrams_malformed"], c.get("udp_rx_oversize", 0), c.get("tcp_accepted", 0)))
sys.exit(0 if n >= int(sys.argv[2]) // 4 and c.get("tcp_accepted", 0) >= int(sys.argv[3]) // 4 else 1)
' "$TMP/a/node/status.json" "$DGRAMS" "$CONNS"
}
wait_until 10 "a counts the flood in its status" counted
counted

# Nothing new outside a's data dir and the logs; no repository dir with a bad name.
new=$(find "$TMP" -newer "$TMP/marker" -not -path "$TMP/a" -not -path "$TMP/a/*" \
       -not -name '*.log' -not -path "$TMP" -not -name flood.py -print)
[ -z "$new" ] || fail "new files outside a's data dir: $new"
bad=$(find "$TMP/a" -name '..*' -o -name '.hidden' -o -name 'passwd' -o -name etc | head -5)
[ -z "$bad" ] || fail "suspicious paths in a's data dir: $bad"
[ ! -e /tmp/etc/passwd ] && [ ! -e "$TMP/etc" ] || fail "a wrote outside its data dir"
# Well-formed announces of new keys (and mutated ones that still pass the key
# check) make an open node create repositories: say how many (issue 7 asks
# for an allowlist; docs/security.md, "Known gaps").
echo "a holds $(find "$TMP/a/repos" -mindepth 2 -maxdepth 2 -type d | wc -l) repositories after the flood"
expect 0 "$GUTS" --data "$TMP/a" fsck alice/repo
grep -q ' 0 faults' "$TMP/out" || fail "fsck of a after the flood: $(cat "$TMP/out")"

# Still replicates with a good peer.
node_start b
wait_until 60 "b replicates alice/repo from a after the flood" \
  repos_equal alice/repo "$TMP/a" "$TMP/b"
export_check b alice/repo "$src"
node_alive a
node_stop a
node_stop b
echo "ok"

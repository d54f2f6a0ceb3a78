#!/usr/bin/env bash
# wire_python.sh - every guts message decodes with a generic msgpack decoder.
#
# The vectors are our own encodings of one sample message per type: the
# committed ones under tests/wire_vectors/ and, when the build has test_wire,
# fresh ones it writes (GUTS_WIRE_DUMP). Debian's python3-msgpack, run by
# /usr/bin/python3 (the python3 first on PATH may be another), must decode
# each to a 5-element envelope with our magic, version, type and a 16-byte
# sender, and the body fields checked below must hold the sample's values.
# Exit 77 (skipped) when python3-msgpack is not installed.
set -euo pipefail

PY=/usr/bin/python3
SRC=${GUTS_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
if [ ! -x "$PY" ] || ! "$PY" -c 'import msgpack' 2>/dev/null; then
    echo "SKIP: $PY with python3-msgpack is not available"
    exit 77
fi

dirs=("$SRC/tests/wire_vectors")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${GUTS_BUILD:-}" ] && [ -x "$GUTS_BUILD/test_wire" ]; then
    GUTS_WIRE_DUMP="$tmp" CK_RUN_CASE=vectors GUTS_SRC="$SRC" \
        "$GUTS_BUILD/test_wire" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
    dirs+=("$tmp")
fi

for d in "${dirs[@]}"; do
    "$PY" - "$d" <<'EOF'
import glob, os, sys
import msgpack

MAGIC = 0x47555453
SENDER = bytes((0xa0 + 0x11 * i) & 0xff for i in range(16))
d = sys.argv[1]
files = sorted(glob.glob(os.path.join(d, "*.msgpack")))
assert len(files) == 12, "expected 12 vectors in %s, found %d" % (d, len(files))
seen = set()

def u64be(b):
    return int.from_bytes(b, "big")

for path in files:
    raw = open(path, "rb").read()
    # raw=False: str must be valid UTF-8; strict_map_key irrelevant (no maps).
    env = msgpack.unpackb(raw, raw=False)
    assert isinstance(env, list) and len(env) == 5, path
    magic, version, mtype, sender, body = env
    assert magic == MAGIC, (path, hex(magic))
    assert version == 1, (path, version)
    assert isinstance(sender, bytes) and sender == SENDER, (path, sender)
    assert isinstance(body, list), path
    assert int(os.path.basename(path).split("-")[0]) == mtype, (path, mtype)
    seen.add(mtype)
    # Re-packing what python decoded gives our bytes back: our forms are
    # msgpack's canonical compact ones.
    assert msgpack.packb(env, use_bin_type=True) == raw, ("not canonical", path)
    if mtype == 1:  # ANNOUNCE
        inc, port, interval, page, pages, repos = body
        assert (inc, port, interval, page, pages) == (3, 7421, 1000, 0, 1)
        assert len(repos) == 2
        key, objects, fp, refs_digest, bloom = repos[0]
        assert key == "alice/guts" and objects == 1234
        assert len(fp) == 16 and u64be(fp[:8]) == 0x0102030405060708
        assert u64be(fp[8:]) == 0x1112131415161718
        assert refs_digest == 0xFEDCBA9876543210
        covered, seed, k, nbits, bits = bloom
        assert (covered, seed, k, nbits) == (6, 42, 7, 60)
        assert len(bits) == (nbits + 7) // 8
        assert repos[1][0] == "bob/empty" and repos[1][4] is None
    elif mtype == 2:  # LEAVE
        assert body == [0x123456789]
    elif mtype == 3:  # PEERS
        (peers,) = body
        assert len(peers) == 2
        assert peers[0][1] == bytes([192, 168, 1, 20, 0x1C, 0x03]), peers[0]
        assert len(peers[1][1]) == 18 and peers[1][1][0] == 0xFD, peers[1]
        assert all(len(p[0]) == 16 for p in peers)
    elif mtype == 10:  # HELLO
        assert body == [77, 65535]
    elif mtype == 11:  # RECON
        key, space, seed, rnd, items = body
        assert (key, space, seed, rnd) == ("alice/guts", 0, 0x0123456789ABCDEF, 2)
        kinds = [it[0] for it in items]
        assert kinds == [1, 2, 3, 4], kinds
        split = items[0]
        assert split[1:3] == [1, 0xA] and len(split[3]) == 32
        fps = [u64be(split[3][2 * i:2 * i + 2]) for i in range(16)]
        assert fps == [0x1000 * i + i for i in range(16)], fps
        assert items[1] == [2, 2, 0xA3, 0x8001]
        assert items[2][3][0:2] == [7, 60] and len(items[2][3][2]) == 8
        assert items[3] == [4, 8, 0xDEADBEEF, None]
    elif mtype == 12:  # WANT
        key, ids = body
        assert key == "alice/guts" and len(ids) == 3
        assert all(len(i) == 20 for i in ids) and ids[1][0] == 0x10
    elif mtype == 13:  # OBJECTS
        key, objs = body
        assert objs[0][1:] == [3, b"hello\n"] and len(objs[0][0]) == 20
        assert objs[1][1:] == [2, b""]
        # record forms: [id, type, enc, size, base|nil, payload]
        assert objs[2][1:] == [3, 1, 1000, None, b"hello\n"]
        assert objs[3][1:4] == [3, 2, 70000] and objs[3][4] == objs[0][0]
        assert objs[3][5] == b"hello\n" and len(objs) == 4
    elif mtype == 14:  # OBJECT_CHUNK
        key, oid, otype, total, offset, data = body
        assert (otype, total, offset, data) == (3, 5000000, 4194304, b"0123456789")
    elif mtype == 15:  # REFS
        key, refs = body
        names = [r[0] for r in refs]
        assert names == ["refs/heads/main", "HEAD", "refs/tags/v1.0"], names
        assert refs[1][2] == "refs/heads/main" and refs[0][2] is None
        assert refs[2][1] == bytes(20) and refs[2][3] == 1 << 32
        assert all(len(r[4]) == 16 for r in refs)
    elif mtype == 16:  # DONE
        assert body == ["alice/guts", 1, 1500]
    elif mtype == 17:  # ERROR
        assert body == [-6, "no such repository"]
    elif mtype == 18:  # DAMAGED
        key, oid = body
        assert key == "alice/guts" and oid == bytes(0x70 + i for i in range(20)), body
assert seen == {1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 18}, seen
print("ok: %d vectors in %s" % (len(files), d))
EOF
done

#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets from tests/wire_vectors/.

fuzz_dgram gets each vector as is; fuzz_frame each vector as a frame plus
one stream of all of them; fuzz_core event scripts (see fuzz_core.c) that
play both sides of a session with the vectors. Run from anywhere; rewrites
only the seed_* files it owns, so regression inputs stay.
"""
import hashlib
import os
import struct


def pack(v):
    """The msgpack subset guts uses, in its most compact forms (as the
    encoder writes them; python3-msgpack would do, but is not needed)."""
    if v is None:
        return b"\xc0"
    if isinstance(v, int):
        if v < 0:
            raise ValueError("negative ints are not used here")
        for lim, hdr, fmt in ((128, b"", ">B"), (1 << 8, b"\xcc", ">B"),
                              (1 << 16, b"\xcd", ">H"), (1 << 32, b"\xce", ">I"),
                              (1 << 64, b"\xcf", ">Q")):
            if v < lim:
                return hdr + struct.pack(fmt, v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xa0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b
    if isinstance(v, bytes):
        if len(v) < 256:
            return b"\xc4" + bytes([len(v)]) + v
        return b"\xc5" + struct.pack(">H", len(v)) + v
    if isinstance(v, list):
        if len(v) < 16:
            hdr = bytes([0x90 | len(v)])
        else:
            hdr = b"\xdc" + struct.pack(">H", len(v))
        return hdr + b"".join(pack(x) for x in v)
    raise TypeError(type(v))

HERE = os.path.dirname(os.path.abspath(__file__))
VEC = os.path.join(HERE, "..", "wire_vectors")


def vectors():
    out = {}
    for name in sorted(os.listdir(VEC)):
        if name.endswith(".msgpack"):
            with open(os.path.join(VEC, name), "rb") as f:
                out[name[:-8]] = f.read()
    return out


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def frame(env):
    return struct.pack(">I", len(env)) + env


def dgram(peer, env):
    return bytes([peer]) + struct.pack("<H", len(env)) + env


def frame_ev(sel, env):
    return bytes([3, sel]) + struct.pack("<H", len(env)) + env


def main():
    v = vectors()
    for k, env in v.items():
        write("fuzz_dgram", k, env)
        write("fuzz_frame", k, frame(env))
    write("fuzz_frame", "all", b"".join(frame(e) for e in v.values()))
    stream_msgs = [k for k in v if int(k[:2]) >= 10]
    # A peer announces; we pull from it and it answers with everything.
    pull = dgram(0, v["01-announce"]) + bytes([7, 40, 4])
    for k in stream_msgs:
        pull += frame_ev(0, v[k])
    write("fuzz_core", "pull", pull)
    # A peer opens a stream to us and asks for everything, one frame a kind.
    serve = bytes([2, 0])
    for k in stream_msgs:
        serve += frame_ev(0, v[k])
    serve += bytes([6, 0, 5, 0, 7, 255])
    write("fuzz_core", "serve", serve)
    # Announces, a leave, and time passing long enough to expire peers.
    write("fuzz_core", "members",
          dgram(0, v["01-announce"]) + dgram(1, v["02-leave"]) + bytes([7, 255] * 4))
    for k in stream_msgs:
        write("fuzz_core", "one_" + k, bytes([2, 0]) + frame_ev(0, v["10-hello"])
              + frame_ev(0, v[k]))
    core_sessions()


SENDER = bytes(range(0xa0, 0xb0))
KEY = "alice/guts"


def env(mtype, body):
    return pack([0x47555453, 1, mtype, SENDER, body])


def git_id(kind, data):
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(data)) + data).digest()


def objects():
    """fuzz_core.c's stored repository, and one commit on top of it."""
    blob = b"hello\n"
    tree = b"100644 f\0" + git_id("blob", blob)
    c1 = ("tree %s\nauthor T <t@example.com> 1700000000 +0000\n"
          "committer T <t@example.com> 1700000000 +0000\n\nfuzz\n"
          % git_id("tree", tree).hex()).encode()
    blob2 = b"more\n"
    tree2 = b"100644 f\0" + git_id("blob", blob2)
    c2 = ("tree %s\nparent %s\nauthor T <t@example.com> 1700000001 +0000\n"
          "committer T <t@example.com> 1700000001 +0000\n\nnext\n"
          % (git_id("tree", tree2).hex(), git_id("commit", c1).hex())).encode()
    new = [(git_id("blob", blob2), 3, blob2), (git_id("tree", tree2), 2, tree2),
           (git_id("commit", c2), 1, c2)]
    return git_id("commit", c1), new


def core_sessions():
    """Sessions that follow the protocol, so the fuzzer starts deep inside."""
    c1, new = objects()
    hello = env(10, [5, 7001])
    c2 = new[2][0]
    ann = env(1, [5, 7001, 1000, 0, 1, [[KEY, 6, bytes(range(16)), 77, None]]])
    ann_new = env(1, [5, 7001, 1000, 0, 1, [["bob/new", 1, bytes(16), 1, None]]])
    write("fuzz_core", "pull_new_repo", dgram(0, ann_new) + bytes([7, 40, 4])
          + frame_ev(0, hello) + frame_ev(0, env(11, [KEY, 0, 0, 0, []])))
    objs = env(13, [KEY, [list(o) for o in new]])
    refs = env(15, [KEY, [["refs/heads/main", c2, None, 9, SENDER],
                          ["HEAD", bytes(20), "refs/heads/main", 9, SENDER]]])
    # Pull: announce, let the stagger pass, connect, answer everything the
    # way a server does (RECONs get re-stamped by the harness).
    pull = dgram(0, ann) + bytes([7, 40, 4]) + frame_ev(0, hello)
    pull += frame_ev(0, env(11, [KEY, 0, 0, 0, []])) + frame_ev(0, objs)
    pull += frame_ev(0, env(16, [KEY, 0, 3]))
    pull += frame_ev(0, env(11, [KEY, 1, 0, 0, []])) + frame_ev(0, refs)
    pull += frame_ev(0, env(16, [KEY, 1, 2])) + bytes([7, 10, 6, 0, 7, 255])
    write("fuzz_core", "pull_valid", pull)
    write("fuzz_core", "pull_objects_first",
          dgram(0, ann) + bytes([7, 40, 4]) + frame_ev(0, hello) + frame_ev(0, objs)
          + frame_ev(0, env(11, [KEY, 0, 0, 0, []])) + frame_ev(0, env(16, [KEY, 0, 3]))
          + frame_ev(0, refs) + frame_ev(0, env(11, [KEY, 1, 0, 0, []]))
          + frame_ev(0, env(16, [KEY, 1, 2])))
    bid, _, bdata = new[0]
    write("fuzz_core", "pull_chunks",
          dgram(0, ann) + bytes([7, 40, 4]) + frame_ev(0, hello)
          + frame_ev(0, env(14, [KEY, bid, 3, len(bdata), 0, bdata[:2]]))
          + frame_ev(0, env(14, [KEY, bid, 3, len(bdata), 2, bdata[2:]]))
          + frame_ev(0, env(11, [KEY, 0, 0, 0, []])) + frame_ev(0, env(16, [KEY, 0, 1])))
    write("fuzz_core", "pull_masks", dgram(0, ann) + bytes([7, 40, 4]) + frame_ev(0, hello)
          + frame_ev(0, env(11, [KEY, 0, 0, 0, [[2, 0, 0, 0xffff]]]))
          + frame_ev(0, objs) + frame_ev(0, env(16, [KEY, 0, 3])))
    # Serve: every kind of puller item at the root, then a WANT.
    items = {
        "all": [[4, 0, 0, None]],
        "bloom": [[3, 0, 0, [7, 64, bytes(8)]]],
        "split": [[1, 0, 0, bytes(32)]],
    }
    for name, it in items.items():
        for space in (0, 1):
            write("fuzz_core", "serve_%s_%d" % (name, space),
                  bytes([2, 0]) + frame_ev(0, hello)
                  + frame_ev(0, env(11, [KEY, space, 99, 0, it]))
                  + bytes([6, 0, 6, 0, 7, 2]))
    write("fuzz_core", "serve_want", bytes([2, 0]) + frame_ev(0, hello)
          + frame_ev(0, env(12, [KEY, [c1, c2]])) + bytes([6, 0, 7, 2]))


if __name__ == "__main__":
    main()

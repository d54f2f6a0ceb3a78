#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets from tests/wire_vectors/.

fuzz_dgram gets each vector as is; fuzz_frame each vector as a frame plus
one stream of all of them; fuzz_core event scripts (see fuzz_core.c) that
play both sides of a session with the vectors. Run from anywhere; rewrites
only the seed_* files it owns, so regression inputs stay.
"""
import os
import struct

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


if __name__ == "__main__":
    main()

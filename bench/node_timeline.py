#!/usr/bin/env python3
"""node_timeline.py - where a fresh node's first copy spends its wall time.

    BENCH_LOGS=/tmp/tl GUTS_BUILD=build-rel scripts/bench-node REPO
    bench/node_timeline.py /tmp/tl/b-*.log

For each log kept by bench-node (node b's log, then "t0=MS t1=MS"), ms:
  start    t0 (before b is started) to b's "listening" line: exec, data dir;
  hello    to "peer ... joined": b's hello (CORE_HELLO_MS window) and the
           peer's answer;
  last     the pull's start to its last event (the session's own duration
           in the "sync ... finished" line, counted by the core from the
           session's start to the event that ended it);
  end      the rest up to the "finished" line: the pull stagger (1-5 ms
           with one peer) and that last event's work (the refs applied,
           the final group commit);
  notice   to t1: the bench's poll and `guts status`;
and the total, t1 - t0. Then the median of each column.
"""
import datetime
import re
import statistics
import sys


def wall_ms(stamp):
    d = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return d.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000


def one(path):
    t = {}
    for line in open(path):
        m = re.match(r"t0=(\d+) t1=(\d+)", line)
        if m:
            t["t0"], t["t1"] = int(m.group(1)), int(m.group(2))
            continue
        p = line.split()
        try:
            ms = wall_ms(p[0])
        except (IndexError, ValueError):
            continue
        if "listening on" in line:
            t["listen"] = ms
        elif line.find("peer ") >= 0 and "joined" in line and "join" not in t:
            t["join"] = ms
        elif "sync " in line and " finished: " in line:
            t["fin"] = ms
            t["dur"] = int(re.search(r"(\d+) ms$", line.strip()).group(1))
    if len(t) < 6:
        return None
    return [t["listen"] - t["t0"], t["join"] - t["listen"], t["dur"],
            t["fin"] - t["dur"] - t["join"], t["t1"] - t["fin"], t["t1"] - t["t0"]]


rows = []
print("log | start | hello | last | end | notice | total")
for f in sys.argv[1:]:
    r = one(f)
    if r:
        rows.append(r)
        print(f, "|", " | ".join("%.0f" % x for x in r))
if rows:
    print("median (%d runs) |" % len(rows),
          " | ".join("%.0f" % statistics.median(c) for c in zip(*rows)))

#!/usr/bin/env python3
"""promcheck.py FILE: a strict check of Prometheus' text exposition format
(0.0.4) for guts-node's /metrics, for machines without promtool (Debian's
prometheus package is ~100 MB). Exit 0 when FILE is valid, else 1 with one
line per problem on stderr.

Checked: every line is a HELP, a TYPE or a sample; every family has HELP
then TYPE before its samples and its samples are contiguous; names and
label names are legal; label values are quoted with only \\\\, \\" and \\n
escapes; a value is a number; no series appears twice; counters end in
_total; names start with guts_; the text ends with a newline.
"""
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s=%s(?:,%s=%s)*)?\})? (\S+)$" % (NAME, LABEL, VALUE, LABEL, VALUE))
NUMBER = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def main(path):
    text = open(path, encoding="utf-8").read()
    errs = []
    if not text.endswith("\n"):
        errs.append("does not end with a newline")
    helped, typed, done, series = {}, {}, set(), set()
    current = None
    for no, line in enumerate(text.splitlines(), 1):
        where = "line %d" % no
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not re.fullmatch(NAME, parts[2]) or not parts[3].strip():
                errs.append("%s: bad HELP" % where)
                continue
            name = parts[2]
            if name in helped:
                errs.append("%s: second HELP for %s" % (where, name))
            if current and current != name:
                done.add(current)
            if name in done:
                errs.append("%s: %s comes back after another family" % (where, name))
            helped[name] = no
            current = name
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in TYPES or not re.fullmatch(NAME, parts[2]):
                errs.append("%s: bad TYPE" % where)
                continue
            name = parts[2]
            if name != current or name in typed:
                errs.append("%s: TYPE of %s not right after its HELP" % (where, name))
            typed[name] = parts[3]
            if parts[3] == "counter" and not name.endswith("_total"):
                errs.append("%s: counter %s does not end in _total" % (where, name))
        elif line.startswith("#") or not line.strip():
            errs.append("%s: stray comment or blank line" % where)
        else:
            m = SAMPLE.match(line)
            if not m:
                errs.append("%s: not a sample: %r" % (where, line[:120]))
                continue
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            if name != current or name not in typed:
                errs.append("%s: sample of %s outside its family" % (where, name))
            if not name.startswith("guts_"):
                errs.append("%s: %s is not a guts_ name" % (where, name))
            if not NUMBER.match(value):
                errs.append("%s: value %r is not a number" % (where, value))
            key = name + labels
            if key in series:
                errs.append("%s: series %s twice" % (where, key))
            series.add(key)
    for name in helped:
        if name not in typed:
            errs.append("%s has HELP but no TYPE" % name)
    if not series:
        errs.append("no sample at all")
    for e in errs:
        print("promcheck: %s: %s" % (path, e), file=sys.stderr)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

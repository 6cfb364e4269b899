#!/usr/bin/python3
"""A strict reader of the Prometheus text exposition format (0.0.4) for the HTTP endpoint tests.

  http_metrics.py check FILE PREFIX       parse and validate; print a JSON summary
  http_metrics.py get FILE NAME [k=v...]  print the value of the one sample that matches

check fails (exit 1, "FAIL: ..." on stderr) when a line does not parse, a sample has no
# TYPE, a family is declared twice, a name lacks PREFIX, a counter's name does not end in
_total, a counter is negative, or a histogram's buckets are not cumulative or disagree
with its _count. Written from the format's description, independently of Lanyard's code."""

import json
import math
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def parse_labels(s, lineno):
    """Parses 'a="x",b="y\\"z"' into a dict, honouring the three escapes."""
    labels, i = {}, 0
    while i < len(s):
        m = re.match(LABEL, s[i:])
        if not m:
            fail("line %d: bad label name at %r" % (lineno, s[i:]))
        name = m.group(0)
        i += len(name)
        if s[i:i + 2] != '="':
            fail("line %d: expected =\" after %s" % (lineno, name))
        i += 2
        val = []
        while True:
            if i >= len(s):
                fail("line %d: unterminated label value" % lineno)
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    fail("line %d: bad escape \\%s" % (lineno, nxt))
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                val.append(c)
                i += 1
        if name in labels:
            fail("line %d: label %s twice" % (lineno, name))
        labels[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                fail("line %d: expected , between labels" % lineno)
            i += 1
    return labels


def parse_value(v, lineno):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    try:
        return float(v)
    except ValueError:
        fail("line %d: bad value %r" % (lineno, v))


def parse(text):
    families, order = {}, []
    if not text.endswith("\n"):
        fail("the text does not end with a newline")
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(NAME, name):
                    fail("line %d: bad metric name %r" % (lineno, name))
                f = families.setdefault(name, {"type": None, "help": None, "samples": []})
                if parts[1] == "TYPE":
                    if f["type"] is not None:
                        fail("line %d: # TYPE %s twice" % (lineno, name))
                    if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram",
                                                           "summary", "untyped"):
                        fail("line %d: bad type" % lineno)
                    if f["samples"]:
                        fail("line %d: # TYPE %s after its samples" % (lineno, name))
                    f["type"] = parts[3]
                    order.append(name)
                else:
                    f["help"] = parts[3] if len(parts) == 4 else ""
            continue
        m = re.fullmatch(r"(%s)(?:\{(.*)\})? (\S+)(?: (-?\d+))?" % NAME, line)
        if not m:
            fail("line %d: not a sample: %r" % (lineno, line))
        name, labels, value = m.group(1), parse_labels(m.group(2) or "", lineno), \
            parse_value(m.group(3), lineno)
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in families and \
                    families[name[:-len(suffix)]]["type"] == "histogram":
                base = name[:-len(suffix)]
        f = families.get(base)
        if not f or f["type"] is None:
            fail("line %d: sample %s without # TYPE" % (lineno, name))
        if order[-1] != base:
            fail("line %d: sample %s is not next to its family's other samples" % (lineno, name))
        f["samples"].append({"name": name, "labels": labels, "value": value})
    return families


def validate(families, prefix):
    for name, f in families.items():
        # The process_* families carry the standard names of Prometheus client libraries.
        if not name.startswith(prefix) and not name.startswith("process_"):
            fail("%s lacks the prefix %s or process_" % (name, prefix))
        if f["help"] is None:
            fail("%s has no # HELP" % name)
        if f["type"] == "counter":
            if not name.endswith("_total"):
                fail("counter %s does not end in _total" % name)
            for s in f["samples"]:
                if s["value"] < 0 or math.isnan(s["value"]):
                    fail("counter %s is %r" % (name, s["value"]))
        if f["type"] == "histogram":
            series = {}
            for s in f["samples"]:
                key = tuple(sorted((k, v) for k, v in s["labels"].items() if k != "le"))
                d = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
                if s["name"] == name + "_bucket":
                    if "le" not in s["labels"]:
                        fail("%s bucket without le" % name)
                    d["buckets"].append((parse_value(s["labels"]["le"], 0), s["value"]))
                elif s["name"] == name + "_sum":
                    d["sum"] = s["value"]
                elif s["name"] == name + "_count":
                    d["count"] = s["value"]
            for key, d in series.items():
                b = d["buckets"]
                if not b or b[-1][0] != math.inf:
                    fail("%s%s: the last bucket is not +Inf" % (name, dict(key)))
                if [x[0] for x in b] != sorted(x[0] for x in b):
                    fail("%s%s: buckets out of order" % (name, dict(key)))
                if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                    fail("%s%s: buckets are not cumulative" % (name, dict(key)))
                if d["count"] is None or d["sum"] is None:
                    fail("%s%s: no _sum or _count" % (name, dict(key)))
                if b[-1][1] != d["count"]:
                    fail("%s%s: +Inf bucket %s != count %s" % (name, dict(key), b[-1][1],
                                                              d["count"]))


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("check", "get"):
        fail("usage: http_metrics.py check FILE PREFIX | get FILE NAME [k=v...]")
    with open(sys.argv[2]) as fh:
        families = parse(fh.read())
    if sys.argv[1] == "check":
        validate(families, sys.argv[3])
        print(json.dumps({n: {"type": f["type"], "samples": len(f["samples"])}
                          for n, f in families.items()}))
        return
    name, want = sys.argv[3], dict(a.split("=", 1) for a in sys.argv[4:])
    found = [s for f in families.values() for s in f["samples"]
             if s["name"] == name and all(s["labels"].get(k) == v for k, v in want.items())]
    if len(found) != 1:
        fail("%d samples match %s %s" % (len(found), name, want))
    v = found[0]["value"]
    print(int(v) if v == int(v) else v)


if __name__ == "__main__":
    main()

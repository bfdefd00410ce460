#!/usr/bin/env python3
"""Buckets perf samples of one consumer run by what the stack says they were doing.

  perf record -F 1999 --call-graph dwarf,32768 -o run.data -- target/release/tradeflow-consumer ...
  perf script -i run.data -F sym,dso,ip | python3 benches/profile/classify.py [whole-run µs per trade]
"""
import sys, re, collections
# (bucket, test on the whole stack as one string, leaf first) in priority order.
RULES = [
    ("allocation (malloc/free/realloc)", lambda leaf, st: re.search(r"malloc|_int_free|realloc|cfree|free_impl|tcache|__libc_free|sdallocx|mallocx", leaf)),
    ("base64 decode", lambda leaf, st: "base64" in st),
    ("KPL check (MD5, protobuf)", lambda leaf, st: "kpl::" in st),
    ("lean body scan (raw_page)", lambda leaf, st: "raw_page" in st),
    ("our decode (JSON trade, seq numbers, page)", lambda leaf, st: re.search(r"take_page|take_parts|decode_checked|trade::fast|decode_bytes|decode_event|SequenceNumber|record::decode", st)),
    # The SDK collects each answer's body into one buffer inside the call (`send()`),
    # whose frames name GetRecordsOutput: without this rule the copy counted as parsing.
    ("HTTP body collection (one copy of each answer)", lambda leaf, st: re.search(r"Collected<|BufList|copy_to_bytes", st)),
    ("SDK response parsing (JSON, Record model, drop)", lambda leaf, st: re.search(r"aws_smithy_json|deserialize|_record::Record|GetRecordsOutput|drop_in_place<aws_sdk_kinesis", st)),
    ("fold (per-symbol sums)", lambda leaf, st: "fold" in st),
    ("Redis (client, scripts)", lambda leaf, st: re.search(r"redis", st)),
    ("DynamoDB / leases", lambda leaf, st: re.search(r"dynamodb|::lease::", st)),
    ("SigV4 signing", lambda leaf, st: "sigv4" in st),
    ("HTTP (hyper, body collection, sockets)", lambda leaf, st: re.search(r"hyper|http_body|h2::|BufList|mio::", st)),
    ("SDK orchestrator / middleware", lambda leaf, st: re.search(r"aws_smithy|aws_sdk|aws_runtime", st)),
    ("metrics / tracing", lambda leaf, st: re.search(r"metrics|tracing", st)),
    ("kernel (syscalls, network)", lambda leaf, st: leaf.endswith("[k]")),
    ("tokio runtime", lambda leaf, st: "tokio" in st),
]
counts = collections.Counter(); total = 0
def flush(frames):
    global total
    if not frames: return
    total += 1
    leaf = frames[0]; st = "\n".join(frames)
    for name, f in RULES:
        if f(leaf, st):
            counts[name] += 1; return
    counts["other: " + leaf[:60]] += 1
frames = []
for line in sys.stdin:
    if not line.strip():
        flush(frames); frames = []; continue
    if line.startswith((" ", "\t")):
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            sym = parts[1]
            # "name (dso)": keep the dso only as a kernel marker (paths would match rules).
            name, _, dso = sym.rpartition(" (")
            frames.append((name or sym) + (" [k]" if "kernel" in dso else ""))
    else:
        flush(frames); frames = []
flush(frames)
scale = float(sys.argv[1]) if len(sys.argv) > 1 else 0  # µs of CPU per trade for the whole run
other = 0
for name, c in counts.most_common():
    pct = 100.0 * c / total
    if name.startswith("other") and pct < 0.8:
        other += c; continue
    print(f"{pct:5.1f} %  {pct*scale/100:6.3f} µs  {name}" if scale else f"{pct:5.1f} %  {name}")
print(f"{100.0*other/total:5.1f} %  other (each < 0.8 %)")
print(f"samples: {total}")

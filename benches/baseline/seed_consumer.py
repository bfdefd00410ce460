"""The seed's consumer, as a baseline for the e2e bench: for every Kinesis record,
parse the JSON trade and run one `INCR symbol:<SYMBOL>` in Redis (one round trip per
record). Reads every shard from TRIM_HORIZON with a GetShardIterator + GetRecords loop
(round robin over the shards, no KCL), stops after --records records and prints its
figures as one JSON line on stdout.

Run by benches/benches/e2e.rs with .tools/python-bench/bin/python (boto3 + redis-py,
installed by scripts/install-tools). Only talks to the loopback endpoints it is given.
"""
import argparse
import json
import resource
import sys
import time

import boto3
import redis


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True, help="Kinesis endpoint (local emulator)")
    ap.add_argument("--stream", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--records", type=int, required=True, help="stop after this many")
    ap.add_argument("--timeout", type=float, default=600.0)
    opt = ap.parse_args()

    kinesis = boto3.client("kinesis", endpoint_url=opt.endpoint, region_name="eu-west-1")
    r = redis.Redis.from_url(opt.redis_url)
    r.ping()

    t0, cpu0 = time.monotonic(), cpu_seconds()
    shards = []
    token = None
    while True:
        page = kinesis.list_shards(NextToken=token) if token else kinesis.list_shards(StreamName=opt.stream)
        shards += [s["ShardId"] for s in page["Shards"]]
        token = page.get("NextToken")
        if not token:
            break
    iters = {
        s: kinesis.get_shard_iterator(StreamName=opt.stream, ShardId=s,
                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for s in shards
    }
    done, calls, bad = 0, 0, 0
    while done < opt.records and iters:
        if time.monotonic() - t0 > opt.timeout:
            print(f"timed out after {done} records", file=sys.stderr)
            return 1
        empty = True
        for shard in list(iters):
            out = kinesis.get_records(ShardIterator=iters[shard], Limit=10000)
            calls += 1
            for rec in out["Records"]:
                if done >= opt.records:
                    break
                try:
                    trade = json.loads(rec["Data"])
                    symbol = trade["s"]
                except (ValueError, KeyError, TypeError):
                    bad += 1  # the seed would crash here; counted instead
                    continue
                r.incr(f"symbol:{symbol}")
                done += 1
                empty = False
            nxt = out.get("NextShardIterator")
            if nxt:
                iters[shard] = nxt
            else:
                del iters[shard]
        if empty:
            time.sleep(0.2)  # what the KCL's idle wait does, roughly
    seconds, cpu = time.monotonic() - t0, cpu_seconds() - cpu0
    print(json.dumps({
        "records": done,
        "bad": bad,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "getrecords_calls": calls,
        "shards": len(shards),
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))
    return 0 if done >= opt.records else 1


if __name__ == "__main__":
    sys.exit(main())

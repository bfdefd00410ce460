"""A KCL 3.x application as a user of the seed pipeline would have it: for every trade,
`INCR symbol:<SYMBOL>` in Redis (the legacy contract, see benches/baseline/seed_consumer.py),
checkpointing after every batch, at shard end and on shutdown. Run on kcl-rs (PyPI: the
Rust port of the KCL 3.x, which keeps the Java KCL's lease table and lease lifecycle) by
consumer/tests/kcl_adopt.rs with the venv scripts/install-tools makes.

Endpoints come from AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB /
AWS_ENDPOINT_URL_CLOUDWATCH; anything but a loopback address is refused. Stops on SIGTERM
(graceful: the KCL calls shutdown_requested, which checkpoints). Prints one line per
event on stdout for the test to follow.
"""
import json
import os
import signal
import sys
import threading
from urllib.parse import urlparse

import redis
from kcl_rs import CheckpointError, RecordProcessorBase, Scheduler


def loopback_only():
    for var in ("AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_CLOUDWATCH"):
        host = urlparse(os.environ.get(var, "")).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            sys.exit(f"{var} must point at a loopback address, got {os.environ.get(var)!r}")
    if os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("AWS_ENDPOINT_URL must not be set (one endpoint per service)")


def say(*words):
    print(*words, flush=True)


def main():
    loopback_only()
    stream, app, worker, redis_url, initial = sys.argv[1:6]
    r = redis.Redis.from_url(redis_url)
    r.ping()

    class Counter(RecordProcessorBase):
        shard = "?"

        def initialize(self, i):
            self.shard = i.shard_id
            say("initialize", self.shard, i.sequence_number)

        def process_records(self, p):
            pipe = r.pipeline(transaction=False)
            n = 0
            for rec in p.records:
                trade = json.loads(rec.data)
                if trade.get("e") == "trade":
                    pipe.incr(f"symbol:{trade['s']}")
                    n += 1
            pipe.execute()
            p.checkpointer.checkpoint()
            say("processed", self.shard, n)

        def lease_lost(self, _):
            say("lease_lost", self.shard)

        def shard_ended(self, s):
            s.checkpointer.checkpoint()
            say("shard_ended", self.shard)

        def shutdown_requested(self, s):
            try:
                s.checkpointer.checkpoint()
            except CheckpointError as e:
                say("shutdown_checkpoint_failed", self.shard, e.value)
            say("shutdown_requested", self.shard)

    scheduler = Scheduler(
        stream_name=stream,
        application_name=app,
        record_processor_factory=Counter,
        worker_identifier=worker,
        region=os.environ.get("AWS_REGION", "eu-west-1"),
        access_key_id="local",
        secret_access_key="local",
        initial_position=initial,
        retrieval_mode="POLLING",
        idle_time_between_reads_millis=200,
        shard_sync_interval_millis=5000,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler.start()
    say("started", app, worker)
    while not stop.wait(0.2):
        pass
    scheduler.shutdown()
    say("stopped")


if __name__ == "__main__":
    main()

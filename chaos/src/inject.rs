//! Playing one fault of the schedule against the running parts, and waiting for its
//! end: consumers killed, stopped or paused, shards split and merged, servers restarted,
//! the producer's websocket dropped, its link to Kinesis cut.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::Client as Kinesis;
use tradeflow_exchange::Exchange;
use tradeflow_shared::testkit::{self, Process};

use crate::gaps::WorkerDown;
use crate::plan::{Fault, Step, KINDS};
use crate::procs::scrape;
use crate::proxy::CutProxy;
use crate::reshard::{merge, split};
use crate::run::{now_ms, wait_some, Servers};

/// The parts a fault may hit, and what the faults did so far.
pub(crate) struct Ctx<'a> {
    pub(crate) servers: &'a mut Servers,
    pub(crate) consumers: &'a mut Vec<Process>,
    pub(crate) proxy: &'a CutProxy,
    pub(crate) exchange: &'a Exchange,
    pub(crate) kinesis: &'a Kinesis,
    pub(crate) producer_metrics: &'a str,
    pub(crate) downs: Vec<WorkerDown>,
    pub(crate) faults: [(u64, u64); KINDS.len()],
    /// Bytes of torn log entries cut before emulator restarts.
    pub(crate) torn_wal_bytes: u64,
    /// Redis faults by what they were (restart; failover or slot migration on a cluster).
    pub(crate) redis_faults: BTreeMap<&'static str, u64>,
    /// What went wrong with the Kinesis emulator itself (not the product).
    pub(crate) emulator_faults: Vec<String>,
}

impl Ctx<'_> {
    /// Injects one fault and waits for its end (restarts done, pause over); false if
    /// it had to be skipped.
    pub(crate) async fn inject(&mut self, step: &Step) -> bool {
        let ok = match step.fault {
            Fault::KillConsumer { consumer, down } => {
                self.restart_consumer(consumer, down, None).await
            }
            Fault::TermConsumer { consumer, down } => {
                let grace = Some(Duration::from_secs(20));
                self.restart_consumer(consumer, down, grace).await
            }
            Fault::PauseConsumer { consumer, paused } => {
                self.worker_down(consumer).pause();
                tokio::time::sleep(paused).await;
                self.consumers[consumer].resume();
                if let Some(d) = self.downs.last_mut() {
                    d.until_ms = Some(now_ms());
                }
                true
            }
            Fault::SplitShard { pick } => split(self.kinesis, pick).await,
            Fault::MergeShards { pick } => merge(self.kinesis, pick).await,
            Fault::RestartRedis => {
                let pick = self.faults[step.fault.kind()].0 as usize;
                let what = tokio::task::block_in_place(|| self.servers.redis.fault(pick));
                *self.redis_faults.entry(what).or_default() += 1;
                true
            }
            Fault::RestartDynamo => {
                tokio::task::block_in_place(|| self.servers.dynamo.restart());
                true
            }
            Fault::RestartKinesis => {
                // kill -9 (its write-ahead log survives it); a SIGTERM waits 10 s for
                // idle keep-alive connections to drain. The emulator's own recovery bug
                // (a torn last log entry breaks the start after next: testkit::cut_torn_wal)
                // is repaired first, and its health is checked: an emulator that comes
                // back DOWN is reported as such, never as the product losing trades.
                let fault = tokio::task::block_in_place(|| {
                    let k = &mut self.servers.kinesis;
                    k.kill();
                    let cut = testkit::cut_torn_wal(&testkit::ferrokinesis_wal(k));
                    k.start();
                    let up = testkit::wait_ferrokinesis_up(k, Duration::from_secs(120));
                    (cut, up)
                });
                match fault {
                    (Ok(n), Ok(())) => {
                        self.torn_wal_bytes += n;
                        true
                    }
                    (cut, up) => {
                        self.emulator_faults.push(format!(
                            "ferrokinesis restart: log repair {cut:?}, health {up:?}"
                        ));
                        true
                    }
                }
            }
            Fault::DropWebsocket => self.drop_websocket().await,
            Fault::CutKinesis { down } => {
                self.proxy.cut();
                tokio::time::sleep(down).await;
                self.proxy.restore();
                true
            }
        };
        let slot = &mut self.faults[step.fault.kind()];
        if ok {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
        ok
    }

    /// Records that consumer `i` stops reading now (for the reader gaps); returns it.
    fn worker_down(&mut self, i: usize) -> &mut Process {
        let c = &mut self.consumers[i];
        self.downs.push(WorkerDown {
            t_ms: now_ms(),
            worker: c.name.clone(),
            until_ms: None,
        });
        c
    }

    /// Consumer `i` killed (SIGKILL), or stopped with SIGTERM and `grace` to exit, then
    /// started again after `down`.
    async fn restart_consumer(
        &mut self,
        i: usize,
        down: Duration,
        grace: Option<Duration>,
    ) -> bool {
        let c = self.worker_down(i);
        tokio::task::block_in_place(|| match grace {
            None => c.kill(),
            Some(grace) => {
                c.stop(grace);
            }
        });
        tokio::time::sleep(down).await;
        c.start().is_ok()
    }

    /// Binance does not replay what a client missed while disconnected, and neither does
    /// the exchange; so the tape is held while the producer is away: pause, wait until
    /// the producer has received everything emitted, close its connections, wait for it
    /// to reconnect, resume. Every trade of the tape is then sent on a connection the
    /// producer had open, and the ground truth stays the whole tape.
    async fn drop_websocket(&mut self) -> bool {
        self.exchange.pause();
        let emitted = self.exchange.emitted_count() as f64;
        let caught_up = wait_some("producer catch-up", Duration::from_secs(30), || async {
            let got = scrape(
                self.producer_metrics,
                "tradeflow_producer_trades_received_total",
            )
            .await?;
            (got >= emitted).then_some(())
        })
        .await
        .is_ok();
        let before = self.exchange.stats();
        if caught_up {
            self.exchange.inject(tradeflow_exchange::Fault::CloseAll);
            let _ = wait_some("producer reconnect", Duration::from_secs(30), || async {
                let s = self.exchange.stats();
                (s.connections_total >= before.connections_total + before.connections_open
                    && s.connections_open >= before.connections_open)
                    .then_some(())
            })
            .await;
        }
        self.exchange.resume();
        caught_up
    }
}

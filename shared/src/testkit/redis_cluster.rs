//! A real Redis Cluster on loopback: `redis-server` nodes in cluster mode on free ports
//! (client and bus port both chosen here, never the fixed +10000 bus offset), joined with
//! `redis-cli --cluster create`, with the faults the tests play on it: a primary killed
//! so its replica takes over, and slots migrated between primaries (`--cluster reshard`).
//! Every node is a [`Service`], stopped by its pid when the cluster is dropped.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{free_port, launch, state_dir, which, Service, Spec};

/// A node as `CLUSTER NODES` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    /// Alive in the view of the node that was asked (no `fail`/`fail?` flag).
    pub alive: bool,
    /// Slots served, as counted from the ranges.
    pub slots: usize,
}

pub struct RedisCluster {
    pub nodes: Vec<Service>,
    cli: std::path::PathBuf,
    password: Option<String>,
    /// TLS only (client, replication and bus): the folder of `tls_certificates`.
    tls: Option<std::path::PathBuf>,
}

/// How the nodes are reached.
#[derive(Debug, Clone, Default)]
pub struct ClusterSecurity {
    /// Every node requires it (`requirepass`, and `masterauth` for replication).
    pub password: Option<String>,
    /// TLS everywhere, certificates from `super::tls_certificates` in this folder.
    pub tls: Option<std::path::PathBuf>,
    /// The server binary (redis-cli stays the one on the PATH); default `redis-server`
    /// from the PATH. `super::valkey_server()` for a Redis 7.2-compatible cluster.
    pub server: Option<std::path::PathBuf>,
}

impl RedisCluster {
    /// `primaries` primaries with `replicas` replicas each, AOF on (`appendfsync
    /// everysec`, as the README assumes) and a 2 s node timeout so a failover takes a
    /// few seconds. Panics (with the logs) if the cluster does not come up.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        Self::start_secured(primaries, replicas, ClusterSecurity::default())
    }

    /// The same, with a password and/or TLS on every node.
    pub fn start_secured(
        primaries: usize,
        replicas: usize,
        security: ClusterSecurity,
    ) -> RedisCluster {
        assert!(
            primaries >= 3,
            "redis-cli --cluster create needs 3 primaries"
        );
        let n = primaries * (replicas + 1);
        let nodes: Vec<Service> = (0..n).map(|_| cluster_node(&security)).collect();
        let cli = which("redis-cli");
        let c = RedisCluster {
            nodes,
            cli,
            password: security.password,
            tls: security.tls,
        };
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(c.nodes.iter().map(|s| format!("127.0.0.1:{}", s.port)));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let out = c.cli_at(c.nodes[0].port, &args);
        assert!(
            out.contains("[OK] All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{out}"
        );
        c.wait_ok(Duration::from_secs(60));
        // Replicas must have synced before a failover test may count on them.
        c.wait_replicas_synced(Duration::from_secs(60));
        c
    }

    /// `redis+cluster://[:password@]127.0.0.1:p1,127.0.0.1:p2,…` over every node.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}@"));
        let scheme = if self.tls.is_some() {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        format!("{scheme}://{auth}{}", seeds.join(","))
    }

    /// Runs `redis-cli -p <port> <args…>` and returns what it printed (stdout + stderr).
    pub fn cli_at(&self, port: u16, args: &[String]) -> String {
        let mut cmd = Command::new(&self.cli);
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
        if let Some(p) = &self.password {
            // From the environment, so it is not on a command line.
            cmd.env("REDISCLI_AUTH", p);
        }
        if let Some(dir) = &self.tls {
            cmd.arg("--tls").arg("--cacert").arg(dir.join("ca.pem"));
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        s
    }

    fn cli(&self, port: u16, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.cli_at(port, &args)
    }

    /// A node that is running, to ask things.
    fn any_live_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|s| s.pid().is_some())
            .map(|s| s.port)
            .expect("no live node")
    }

    /// The cluster's view of its nodes, as a live node sees it.
    pub fn topology(&self) -> Vec<NodeInfo> {
        parse_nodes(&self.cli(self.any_live_port(), &["CLUSTER", "NODES"]))
    }

    /// The slot of a key (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u16 {
        self.cli(self.any_live_port(), &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT")
    }

    /// Index (into `nodes`) of the live primary serving `slot`.
    pub fn primary_of_slot(&self, slot: u16) -> usize {
        let out = self.cli(self.any_live_port(), &["CLUSTER", "SLOTS"]);
        // redis-cli prints the nested reply one scalar per line: lo, hi, ip, port, id, …
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let mut i = 0;
        while i + 3 < lines.len() {
            if let (Ok(lo), Ok(hi)) = (lines[i].parse::<u16>(), lines[i + 1].parse::<u16>()) {
                if lines[i + 2] == "127.0.0.1" && (lo..=hi).contains(&slot) {
                    let port: u16 = lines[i + 3].parse().expect("port");
                    return self.index_of_port(port);
                }
            }
            i += 1;
        }
        panic!("slot {slot} is not served:\n{out}");
    }

    fn index_of_port(&self, port: u16) -> usize {
        self.nodes
            .iter()
            .position(|s| s.port == port)
            .expect("node of port")
    }

    /// Waits until every live node says `cluster_state:ok`, all of them agree on which
    /// primaries serve the 16,384 slots, and every such primary is alive.
    pub fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ok within {limit:?}: {:?}",
                self.topology()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn is_ok(&self) -> bool {
        let mut views = Vec::new();
        for s in self.nodes.iter().filter(|s| s.pid().is_some()) {
            if !self
                .cli(s.port, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                return false;
            }
            let mut v: Vec<(u16, usize)> = parse_nodes(&self.cli(s.port, &["CLUSTER", "NODES"]))
                .into_iter()
                .filter(|n| n.primary && n.slots > 0)
                .map(|n| (n.port, n.slots))
                .collect();
            v.sort();
            if v.iter().map(|x| x.1).sum::<usize>() != 16384 {
                return false;
            }
            let all_live = v.iter().all(|(port, _)| {
                self.nodes
                    .iter()
                    .any(|s| s.port == *port && s.pid().is_some())
            });
            if !all_live {
                return false;
            }
            views.push(v);
        }
        views.windows(2).all(|w| w[0] == w[1])
    }

    fn wait_replicas_synced(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for s in self.nodes.iter().filter(|s| s.pid().is_some()) {
            loop {
                let info = self.cli(s.port, &["INFO", "replication"]);
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(Instant::now() < deadline, "replica {} never synced", s.port);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Kills (SIGKILL) the primary at `index`, waits until its replica has taken its
    /// slots and the cluster is ok again, then starts the old primary again (it rejoins
    /// as a replica). Returns the index of the promoted replica.
    pub fn fail_over(&mut self, index: usize) -> usize {
        let victim = self.nodes[index].port;
        let slot_before: Vec<NodeInfo> = self.topology();
        let me = slot_before
            .iter()
            .find(|n| n.port == victim)
            .expect("victim in topology");
        assert!(me.primary, "node {victim} is not a primary");
        self.nodes[index].kill();
        self.wait_ok(Duration::from_secs(60));
        let promoted = self
            .topology()
            .into_iter()
            .filter(|n| n.primary && n.slots > 0 && n.alive)
            .find(|n| !slot_before.iter().any(|b| b.port == n.port && b.primary))
            .map(|n| self.index_of_port(n.port))
            .expect("a replica was promoted");
        self.nodes[index].start();
        self.wait_ok(Duration::from_secs(60));
        self.wait_replicas_synced(Duration::from_secs(60));
        promoted
    }

    /// Moves `slots` slots from the primary at `from` to the primary at `to` with
    /// `redis-cli --cluster reshard` (keys move one MIGRATE at a time while clients
    /// keep writing: they meet ASK and TRYAGAIN). Returns what redis-cli printed.
    pub fn reshard(&self, from: usize, to: usize, slots: usize) -> String {
        let id_of = |i: usize| {
            let port = self.nodes[i].port;
            self.topology()
                .into_iter()
                .find(|n| n.port == port)
                .map(|n| n.id)
                .expect("node id")
        };
        let args: Vec<String> = vec![
            "--cluster".into(),
            "reshard".into(),
            format!("127.0.0.1:{}", self.nodes[from].port),
            "--cluster-from".into(),
            id_of(from),
            "--cluster-to".into(),
            id_of(to),
            "--cluster-slots".into(),
            slots.to_string(),
            "--cluster-yes".into(),
            "--cluster-pipeline".into(),
            "10".into(),
        ];
        let out = self.cli_at(self.nodes[from].port, &args);
        self.wait_ok(Duration::from_secs(60));
        out
    }

    /// Indexes of the live primaries that serve slots.
    pub fn primaries(&self) -> Vec<usize> {
        self.topology()
            .into_iter()
            .filter(|n| n.primary && n.slots > 0 && n.alive)
            .map(|n| self.index_of_port(n.port))
            .collect()
    }
}

fn cluster_node(security: &ClusterSecurity) -> Service {
    let port = free_port();
    let bus = loop {
        let p = free_port();
        if p != port {
            break p;
        }
    };
    let state = state_dir("redis-cluster");
    let dir = state.path().display().to_string();
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--cluster-port",
        &bus.to_string(),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &format!("{dir}/nodes.conf"),
        "--cluster-node-timeout",
        "2000",
        "--dir",
        &dir,
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut args = args;
    if let Some(p) = &security.password {
        for flag in ["--requirepass", "--masterauth"] {
            args.push(flag.into());
            args.push(p.clone());
        }
    }
    if let Some(tls) = &security.tls {
        // The client port speaks TLS only; so do replication and the cluster bus.
        let file = |f: &str| tls.join(f).display().to_string();
        let port_at = args.iter().position(|a| a == "--port").expect("--port") + 1;
        args[port_at] = "0".into();
        args.extend([
            "--tls-port".into(),
            port.to_string(),
            "--tls-cluster".into(),
            "yes".into(),
            "--tls-replication".into(),
            "yes".into(),
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]);
    }
    launch(Spec {
        name: "redis-cluster-node",
        program: security
            .server
            .clone()
            .unwrap_or_else(|| which("redis-server")),
        args,
        envs: vec![],
        cwd: None,
        port,
        tls_port: None,
        state,
    })
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch>
/// <link> <slot ranges…>`.
fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let port = f[1].split('@').next()?.rsplit(':').next()?.parse().ok()?;
            let flags = f[2];
            let slots = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => {
                        b.parse::<usize>().unwrap_or(0) + 1 - a.parse::<usize>().unwrap_or(0)
                    }
                    None => 1,
                })
                .sum();
            Some(NodeInfo {
                id: f[0].to_string(),
                port,
                primary: flags.contains("master"),
                alive: !flags.contains("fail"),
                slots,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines() {
        let text = "\
07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 6000 [5461->-abc]
292f 127.0.0.1:30002@31002 master,fail - 0 0 2 disconnected 5461-10922
";
        let n = parse_nodes(text);
        assert_eq!(n.len(), 3);
        assert_eq!((n[0].port, n[0].primary, n[0].slots), (30004, false, 0));
        assert_eq!((n[1].port, n[1].primary, n[1].slots), (30001, true, 5462));
        assert!(n[1].alive && !n[2].alive);
        assert_eq!(n[2].slots, 5462);
    }
}

//! Live sessions per PDF node, as the gateway counts them: once a second the loadgen lists
//! the gateway's nodes (`GET /nodes` on its admin port) and asks for each node's count
//! (`GET /sessions/count?node=NAME`). The samples go into summary.json (`pdf_sessions`), a
//! column per node in timeline.csv, and a plot with one line per node in report.html.
//! The same round reads the gateway's `/metrics` for its own latency
//! ([`crate::gateway_latency`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// One second's counts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSample {
    /// The timeline row it belongs to (seconds since traffic started).
    pub second: u64,
    /// Live sessions the gateway has placed on each PDF node, by the node's name.
    pub sessions: BTreeMap<String, u64>,
}

/// A GET with short timeouts (a slow answer must not hold up the next sample); returns the
/// body of a 200.
pub(crate) fn get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .with_context(|| format!("GET http://{addr}{path}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
    if head.split_whitespace().nth(1) != Some("200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(head));
    }
    Ok(body.to_owned())
}

/// A node name as a query value (names are short identifiers; anything else is escaped).
fn query_value(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The gateway's live sessions per PDF node, now (blocking).
pub fn sample(admin: SocketAddr) -> anyhow::Result<BTreeMap<String, u64>> {
    let nodes: serde_json::Value = serde_json::from_str(&get(admin, "/nodes")?)?;
    let mut counts = BTreeMap::new();
    for node in nodes["nodes"].as_array().context("GET /nodes: no nodes")? {
        let name = node["name"]
            .as_str()
            .context("GET /nodes: a node without name")?;
        let count: serde_json::Value = serde_json::from_str(&get(
            admin,
            &format!("/sessions/count?node={}", query_value(name)),
        )?)?;
        let sessions = count["sessions"]
            .as_u64()
            .with_context(|| format!("/sessions/count?node={name}: no count in {count}"))?;
        counts.insert(name.to_owned(), sessions);
    }
    Ok(counts)
}

/// Samples every second, on the timeline's clock (second `k` is taken `k` seconds after
/// `started`), into `samples`, and the gateway's own latency since the second before into
/// `latency`, until aborted. A failed sample is skipped (the gateway may be busy or gone);
/// the first failure is logged.
pub async fn sample_every_second(
    admin: SocketAddr,
    started: Instant,
    samples: Arc<Mutex<Vec<NodeSample>>>,
    latency: Arc<Mutex<crate::gateway_latency::GatewayLatency>>,
) {
    let mut warned = false;
    // The reading at the last second (the first one, at second 0, has nothing before it).
    let mut last: Option<crate::gateway_latency::Reading> = None;
    for second in 0u64.. {
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        let round = tokio::task::spawn_blocking(move || {
            let reading = get(admin, "/metrics")
                .ok()
                .and_then(|text| crate::gateway_latency::parse(&text));
            let sessions = (second > 0).then(|| sample(admin));
            (reading, sessions)
        })
        .await;
        let Ok((reading, sessions)) = round else {
            continue;
        };
        if let (Some(before), Some(after)) = (&last, &reading) {
            latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(second, before, after);
        }
        last = reading;
        match sessions {
            Some(Ok(sessions)) => samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(NodeSample { second, sessions }),
            Some(Err(error)) if !warned => {
                warned = true;
                tracing::warn!("live sessions per PDF node: {error:#}");
            }
            _ => {}
        }
    }
}

/// The node names over all samples, in order.
pub fn node_names(samples: &[NodeSample]) -> Vec<String> {
    let mut names: Vec<String> = samples
        .iter()
        .flat_map(|s| s.sessions.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Shards' samples added second by second, node by node (each shard samples its own
/// gateway, or with a shared gateway only shard 0 samples it).
pub fn merge(all: &[&[NodeSample]]) -> Vec<NodeSample> {
    let mut by_second: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for samples in all {
        for sample in samples.iter() {
            let row = by_second.entry(sample.second).or_default();
            for (node, n) in &sample.sessions {
                *row.entry(node.clone()).or_default() += n;
            }
        }
    }
    by_second
        .into_iter()
        .map(|(second, sessions)| NodeSample { second, sessions })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-connection-at-a-time fake admin port answering like the gateway's.
    fn fake_gateway(answers: fn(&str) -> (u16, String)) -> SocketAddr {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming().take(16) {
                let Ok(mut stream) = stream else { return };
                let mut line = String::new();
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let _ = reader.read_line(&mut line);
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, body) = answers(&path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        addr
    }

    #[test]
    fn a_sample_lists_the_nodes_and_counts_each() {
        let admin = fake_gateway(|path| match path {
            "/nodes" => (
                200,
                r#"{"nodes":[{"name":"pdf0","sessions":1},{"name":"pdf 1","sessions":2}]}"#.into(),
            ),
            "/sessions/count?node=pdf0" => (200, r#"{"node":"pdf0","sessions":120}"#.into()),
            "/sessions/count?node=pdf%201" => (200, r#"{"node":"pdf 1","sessions":7}"#.into()),
            _ => (404, "{}".into()),
        });
        let counts = sample(admin).expect("sample");
        assert_eq!(
            counts,
            BTreeMap::from([("pdf 1".to_owned(), 7), ("pdf0".to_owned(), 120)])
        );
        let refused = fake_gateway(|_| (404, "{}".into()));
        let error = sample(refused).expect_err("404");
        assert!(format!("{error:#}").contains("GET /nodes"), "{error:#}");
    }

    #[test]
    fn shards_samples_add_up_by_second_and_node() {
        let sample = |second, pairs: &[(&str, u64)]| NodeSample {
            second,
            sessions: pairs.iter().map(|&(n, c)| (n.to_owned(), c)).collect(),
        };
        let a = [
            sample(1, &[("pdf0", 10)]),
            sample(2, &[("pdf0", 5), ("pdf1", 4)]),
        ];
        let b = [sample(1, &[("pdf0", 1)]), sample(3, &[("pdf1", 2)])];
        let merged = merge(&[&a, &b]);
        assert_eq!(
            merged,
            [
                sample(1, &[("pdf0", 11)]),
                sample(2, &[("pdf0", 5), ("pdf1", 4)]),
                sample(3, &[("pdf1", 2)]),
            ]
        );
        assert_eq!(node_names(&merged), ["pdf0", "pdf1"]);
    }
}

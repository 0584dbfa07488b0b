//! The running node's own view: whether it is ready (and why not), how many
//! peers its DHT routing table holds, and whether its cluster is private.
//!
//! Read from the daemon's admin API (`Status`) over `--admin-socket`: the
//! readiness checks, the routing table's peers and the cluster's privacy
//! arrive as typed fields. The metrics port, which kubelet's probes ask, is
//! then only checked to answer.
//!
//! When the socket does not answer (or belongs to another daemon), doctor
//! says so and reads `/readyz?verbose` on the metrics port instead, as it
//! did before the admin API existed. It falls back rather than stopping
//! there because the socket is often out of its reach: the Helm chart keeps
//! it inside the pod (an in-memory `emptyDir`) while doctor runs on the node,
//! where containerd's configuration and `certs.d` are; the socket is root's
//! (mode 0600); and `peerpull run --admin-socket ""` serves none. The
//! verbose report lists the same checks from the same place (the node's
//! `Health`), so the findings match; only the peer count has to be read
//! from the routing check's text there. `--admin-socket ""` asks
//! `/readyz?verbose` without a word about the socket.

use std::net::SocketAddr;
use std::path::Path;

use peerpull_admin::v1;

use super::network::{self, PROBE_TIMEOUT};
use super::Check;
use crate::cli::ListenArgs;

/// What `/readyz` answers a node that is not ready.
const NOT_READY: u16 = 503;

/// What the node says about itself, from either source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    /// What `/readyz` answers: 200 when every check passed, else 503 (the
    /// admin API's `ready` maps to the same).
    status: u16,
    /// Why it is not ready: each failed check as `/readyz?verbose` prints it
    /// (`[-]routing failed: no peer in the routing table`).
    failed: Vec<String>,
    /// Peers in the DHT's routing table, when the node says.
    peers: Option<usize>,
    /// Whether the cluster is private, when the node says.
    membership: Option<Membership>,
}

/// Whether only nodes holding the pre-shared key may join.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Membership {
    /// A pre-shared key; the node's detail names its fingerprint.
    Private(String),
    /// No key: any host that reaches the router port may join.
    Open,
}

/// The node is ready, has DHT peers and a private cluster: asked over
/// `socket`, else at the metrics port.
pub(super) async fn check(listen: &ListenArgs, socket: &Path) -> Vec<Check> {
    let metrics = network::reachable(listen.metrics_addr);
    let mut checks = Vec::new();
    let asked = match socket.as_os_str().is_empty() {
        true => None,
        false => Some(status(socket, listen.registry_addr).await),
    };
    let report = match asked {
        Some(Ok(report)) => {
            if let Err(e) = network::connect(metrics).await {
                checks.push(metrics_down(metrics, &e.to_string()));
            }
            report
        }
        unasked => {
            if let Some(Err(why)) = unasked {
                checks.push(Check::warn(
                    format!(
                        "cannot ask the admin socket {} ({why}): readiness and peers come from /readyz?verbose",
                        socket.display()
                    ),
                    "pass `peerpull run`'s --admin-socket (the Helm chart keeps it inside the pod: \
                     `kubectl exec <pod> -- peerpull status`)",
                ));
            }
            match network::http_get(metrics, "/readyz?verbose").await {
                Ok((status, body)) => Report::from_readyz(status, &body),
                Err(e) => {
                    checks.push(metrics_down(metrics, &e));
                    return checks;
                }
            }
        }
    };
    checks.extend(findings(metrics, &report));
    checks
}

/// The daemon's `Status` over `socket`, when that daemon serves the mirror at `registry_addr`.
async fn status(socket: &Path, registry_addr: SocketAddr) -> Result<Report, String> {
    let ask = async {
        let mut client = peerpull_admin::connect(socket).await.map_err(|e| match e {
            peerpull_admin::Error::Connect { reason, .. } => reason,
            other => other.to_string(),
        })?;
        let answer = client.status(v1::StatusRequest {}).await.map_err(|s| s.message().to_owned())?;
        Ok::<_, String>(answer.into_inner())
    };
    let answer = tokio::time::timeout(PROBE_TIMEOUT, ask).await.map_err(|_| "timed out".to_owned())??;
    match answer.mirror_addr.parse::<SocketAddr>() {
        Ok(theirs) if !same_listener(registry_addr, theirs) => {
            Err(format!("it belongs to the peerpull whose mirror is {theirs}, not {registry_addr}"))
        }
        _ => Ok(Report::from_status(&answer)),
    }
}

/// Whether a daemon bound to `theirs` is the one listening on `ours` (an unspecified IP matches any).
fn same_listener(ours: SocketAddr, theirs: SocketAddr) -> bool {
    ours.port() == theirs.port()
        && (ours.ip() == theirs.ip() || ours.ip().is_unspecified() || theirs.ip().is_unspecified())
}

fn metrics_down(metrics: SocketAddr, error: &str) -> Check {
    Check::fail(format!("the metrics port {metrics} does not answer: {error}"), "start `peerpull run`")
}

impl Report {
    /// The admin API's `Status`.
    fn from_status(status: &v1::StatusResponse) -> Self {
        let failed =
            status.checks.iter().filter(|c| !c.ok).map(|c| format!("[-]{} failed: {}", c.name, c.detail)).collect();
        let membership = match status.private_cluster {
            true => Membership::Private(
                status
                    .checks
                    .iter()
                    .find(|c| c.name == "membership")
                    .map_or_else(|| "pre-shared key".to_owned(), |c| c.detail.clone()),
            ),
            false => Membership::Open,
        };
        Self {
            status: if status.ready { 200 } else { NOT_READY },
            failed,
            peers: Some(status.peers.len()),
            membership: Some(membership),
        }
    }

    /// `/readyz?verbose`'s answer: one `[+]name ok: detail` or
    /// `[-]name failed: detail` line per check (an older peerpull answers
    /// the plain probe's one line).
    fn from_readyz(status: u16, body: &str) -> Self {
        let mut failed: Vec<String> = body.lines().filter(|l| l.starts_with("[-]")).map(str::to_owned).collect();
        if failed.is_empty() && status != 200 {
            failed.push(body.trim().to_owned());
        }
        let routing = body.lines().find_map(|l| l.strip_prefix("[+]routing ok: ").or(l.strip_prefix("[-]routing ")));
        let peers = routing.map(|detail| detail.split(' ').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0));
        let membership = body.lines().find_map(|l| l.strip_prefix("[+]membership ok: ")).map(|detail| {
            match detail.starts_with("OPEN") {
                true => Membership::Open,
                false => Membership::Private(detail.to_owned()),
            }
        });
        Self { status, failed, peers, membership }
    }
}

/// Ready or why not, the DHT's peers, and the cluster's privacy; `addr` is
/// the metrics port, where readiness probes ask.
fn findings(addr: SocketAddr, report: &Report) -> Vec<Check> {
    let mut checks = vec![match report.status {
        200 => Check::ok(format!("peerpull on {addr} is ready")),
        status => Check::fail(
            format!("peerpull on {addr} is not ready ({status}): {}", report.failed.join("; ")),
            "see peerpull's log; readiness needs containerd, the first advertisement and a DHT peer",
        ),
    }];
    checks.push(match report.peers {
        Some(n) if n >= 1 => Check::ok(format!("the DHT has {n} peer(s)")),
        Some(_) => Check::warn(
            "the DHT has no peers: this node can serve only what it holds",
            "check --bootstrap and that other nodes' router ports are reachable",
        ),
        None => Check::warn("peerpull does not report its DHT peers", "upgrade peerpull"),
    });
    match &report.membership {
        Some(Membership::Open) => checks.push(Check::warn(
            "the cluster is open: any host that reaches the router port can join, announce and be asked",
            "give every node the same --psk-file (the Helm chart generates one)",
        )),
        Some(Membership::Private(detail)) => checks.push(Check::ok(format!("the cluster is private ({detail})"))),
        None => {}
    }
    checks
}

#[cfg(test)]
mod tests;

//! `peerpull status` and `peerpull locate`: the local daemon's admin API, printed.
//!
//! Both connect to the daemon's Unix socket (`--admin-socket`), make one
//! call and print its answer as text tables or, with `--output json`, as
//! the API's own messages. A reference that cannot be one is bad usage
//! (64) before any connection is made; a daemon that does not answer is a
//! failure (1) naming the socket.

use std::fmt::Write as _;

use anyhow::anyhow;
use peerpull_admin::v1::{self, LocateRequest, StatusRequest};
use peerpull_node::admin::{human_bytes as bytes, locate};

use crate::cli::{AdminClientArgs, LocateArgs, Output, StatusArgs};
use crate::exit::Failure;

/// `peerpull status`.
pub(crate) fn status(args: StatusArgs) -> Result<(), Failure> {
    let answer = call(&args.admin, |mut client| async move { client.status(StatusRequest {}).await })?;
    print(args.admin.output, &answer, status_text)
}

/// `peerpull locate`.
pub(crate) fn locate(args: LocateArgs) -> Result<(), Failure> {
    locate::parse(&args.reference).map_err(|e| Failure::usage(anyhow!("{e}")))?;
    let request = LocateRequest { reference: args.reference.clone(), limit: args.limit };
    let answer = call(&args.admin, |mut client| async move { client.locate(request).await })?;
    print(args.admin.output, &answer, |located| locate_text(&args.reference, located))
}

/// Connects to the daemon and makes one call.
fn call<T, F, Fut>(admin: &AdminClientArgs, make: F) -> Result<T, Failure>
where
    F: FnOnce(peerpull_admin::AdminClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow!("starting the runtime: {e}")))?;
    runtime.block_on(async {
        let client =
            peerpull_admin::connect(&admin.socket.admin_socket).await.map_err(|e| Failure::Runtime(e.into()))?;
        match make(client).await {
            Ok(answer) => Ok(answer.into_inner()),
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                Err(Failure::usage(anyhow!("{}", status.message())))
            }
            Err(status) => Err(Failure::Runtime(anyhow!("{}", status.message()))),
        }
    })
}

fn print<T: serde::Serialize>(output: Output, answer: &T, text: impl FnOnce(&T) -> String) -> Result<(), Failure> {
    let out = match output {
        Output::Text => text(answer),
        Output::Json => {
            let json = serde_json::to_string_pretty(answer).map_err(|e| Failure::Runtime(e.into()))?;
            json + "\n"
        }
    };
    print!("{out}");
    Ok(())
}

fn status_text(s: &v1::StatusResponse) -> String {
    let mut out = String::new();
    let cluster = if s.private_cluster { "private (pre-shared key)" } else { "OPEN (no pre-shared key)" };
    let _ = writeln!(out, "peer        {}", s.peer_id);
    let _ = writeln!(out, "version     {}", s.version);
    let _ = writeln!(out, "mirror      {}", s.mirror_addr);
    let _ = writeln!(out, "router      {}", s.router_addr);
    let _ = writeln!(out, "cluster     {cluster}");
    let _ = writeln!(out, "ready       {}", if s.ready { "yes" } else { "NO" });
    for check in &s.checks {
        let mark = if check.ok { '+' } else { '-' };
        let _ = writeln!(out, "  [{mark}] {:<14} {}", check.name, check.detail);
    }
    let _ = writeln!(out, "advertised  {} digests, {} tags", s.advertised_digests, s.advertised_tags);
    let in_flight: Vec<String> = s.transfers.iter().map(|t| format!("{} {}", t.source, t.in_flight)).collect();
    let _ = writeln!(out, "sending     {}", in_flight.join(", "));
    let _ = writeln!(out, "shared      {} requests joined an upstream fetch under way", s.transfers_shared);
    let _ = writeln!(out, "spool       {}", bytes(s.spool_bytes));
    let _ = writeln!(out, "\n{:<40} {:<15} PAUSED", "UPSTREAM", "LAST ANSWER");
    if s.upstreams.is_empty() {
        let _ = writeln!(out, "(none asked yet)");
    }
    for u in &s.upstreams {
        let paused = match u.paused_for_seconds {
            0 => "-".to_owned(),
            n => format!("{n}s"),
        };
        let _ = writeln!(out, "{:<40} {:<15} {paused}", u.registry, u.last_outcome);
    }
    if !s.preheat.is_empty() {
        let _ =
            writeln!(out, "\n{:<48} {:<9} {:<5} {:<8} {:<10} DIGEST", "PREHEAT", "STATE", "HERE", "HOLDERS", "CHECKED");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        for p in &s.preheat {
            let here = if p.mine { "yes" } else { "no" };
            let held = p.holders.iter().filter(|h| p.responsible.contains(h)).count();
            let holders = format!("{held}/{}", p.responsible.len());
            let checked = match p.checked_at {
                0 => "-".to_owned(),
                at => format!("{}s ago", now.saturating_sub(at)),
            };
            let digest = if p.digest.is_empty() { "-" } else { &p.digest };
            let _ = writeln!(out, "{:<48} {:<9} {here:<5} {holders:<8} {checked:<10} {digest}", p.reference, p.state);
            if !p.error.is_empty() {
                let _ = writeln!(out, "  {}", p.error);
            }
        }
    }
    if let Some(p) = s.private_images.as_ref().filter(|p| p.mode == "verify") {
        let _ = writeln!(out, "\nPRIVATE REPOSITORIES ({})", p.repositories.len());
        for repository in &p.repositories {
            let _ = writeln!(out, "{repository}");
        }
        let _ = writeln!(out, "\n{:<34} {:<56} VERIFIED", "CREDENTIALS (FINGERPRINT)", "REPOSITORY");
        for v in &p.verifications {
            let repository = format!("{}/{}", v.registry, v.repository);
            let _ = writeln!(out, "{:<34} {repository:<56} {}s ago", v.fingerprint, v.seconds_ago);
        }
    }
    let _ = writeln!(out, "\n{:<56} {:<24} ZONE", format!("PEER ({})", s.peers.len()), "MIRROR");
    for p in &s.peers {
        let mirror = if p.mirror_addr.is_empty() { "-" } else { &p.mirror_addr };
        let zone = if p.zone.is_empty() { "-" } else { &p.zone };
        let _ = writeln!(out, "{:<56} {mirror:<24} {zone}", p.peer_id);
    }
    out
}

fn locate_text(reference: &str, located: &v1::LocateResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{reference} is {}", located.digest);
    let _ = writeln!(out, "{:<9} {:<71} {:>10}  {:<4}  PROVIDERS", "ROLE", "DIGEST", "SIZE", "HERE");
    for blob in &located.blobs {
        let here = if blob.local { "yes" } else { "no" };
        let providers: Vec<String> = blob
            .providers
            .iter()
            .map(|p| match p.zone.as_str() {
                "" => p.mirror_addr.clone(),
                zone => format!("{} ({zone})", p.mirror_addr),
            })
            .collect();
        let providers = if providers.is_empty() { "none".to_owned() } else { providers.join(" ") };
        let _ = writeln!(
            out,
            "{:<9} {:<71} {:>10}  {here:<4}  {}: {providers}",
            blob.role,
            blob.digest,
            bytes(blob.size),
            blob.providers.len()
        );
    }
    let missing = located.blobs.iter().filter(|b| !b.local && b.providers.is_empty()).count();
    if missing > 0 {
        let _ = writeln!(out, "{missing} blob(s) held by no node: a pull needs the upstream for them");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn a_blob_nobody_holds_is_called_out() {
        let blob = v1::Blob {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 2048,
            media_type: String::new(),
            role: "layer".into(),
            local: false,
            providers: vec![],
        };
        let text = locate_text("nginx", &v1::LocateResponse { digest: blob.digest.clone(), blobs: vec![blob] });
        assert!(text.contains("layer") && text.contains("2.0 KiB") && text.contains("0: none"), "{text}");
        assert!(text.contains("1 blob(s) held by no node"), "{text}");
    }
}

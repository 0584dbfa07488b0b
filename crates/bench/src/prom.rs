//! A node's `/metrics` page read once: the sum of one metric's samples
//! whose labels match, from the Prometheus text format.
//!
//! Only what the scenarios read: counters and gauges by name and label
//! values without commas or escaped quotes (every peerpull label value is a
//! fixed word). Histograms, help and type lines are skipped.

use anyhow::{bail, Context as _};

/// One scrape of a `/metrics` page.
#[derive(Debug, Clone)]
pub(crate) struct Scrape(String);

impl Scrape {
    /// GETs `<base>/metrics`.
    pub(crate) async fn of(base: &str) -> anyhow::Result<Self> {
        let url = format!("{base}/metrics");
        let reply = peerpull_testbed::http::get(&url).await.with_context(|| format!("GET {url}"))?;
        if reply.status != 200 {
            bail!("GET {url} answered {}", reply.status);
        }
        Ok(Self(String::from_utf8_lossy(&reply.body).into_owned()))
    }

    /// The sum of the samples of `name` that carry every one of `labels`
    /// (0 when none carries them). Fails when the page has no `name` at
    /// all: a renamed metric must not read as a quiet node.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
        let shown = self
            .0
            .lines()
            .any(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')));
        if !shown {
            bail!("no metric {name} on the /metrics page");
        }
        Ok(self
            .0
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, set) = match series.split_once('{') {
                    Some((metric, set)) => (metric, set.strip_suffix('}')?),
                    None => (series, ""),
                };
                let pairs: Vec<(&str, &str)> = set
                    .split(',')
                    .filter_map(|pair| {
                        let (key, value) = pair.split_once('=')?;
                        Some((key, value.strip_prefix('"')?.strip_suffix('"')?))
                    })
                    .collect();
                let matches = metric == name && labels.iter().all(|wanted| pairs.contains(wanted));
                matches.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_samples_only() -> anyhow::Result<()> {
        let page = Scrape(
            "# HELP peerpull_routing_requests Kademlia requests\n\
             peerpull_routing_requests_total{direction=\"sent\",kind=\"find_node\"} 3\n\
             peerpull_routing_requests_total{direction=\"sent\",kind=\"add_provider\"} 4\n\
             peerpull_routing_requests_total{direction=\"answered\",kind=\"find_node\"} 5\n\
             peerpull_routing_requests_total_x{direction=\"sent\"} 100\n\
             peerpull_routing_pings_total 7\n"
                .to_owned(),
        );
        let requests = "peerpull_routing_requests_total";
        assert_eq!(page.sum(requests, &[("direction", "sent")])?, 7.0);
        assert_eq!(page.sum(requests, &[("direction", "sent"), ("kind", "add_provider")])?, 4.0);
        assert_eq!(page.sum(requests, &[])?, 12.0);
        assert_eq!(page.sum("peerpull_routing_pings_total", &[])?, 7.0);
        assert_eq!(page.sum(requests, &[("direction", "dropped")])?, 0.0);
        assert!(page.sum("peerpull_routing_requests", &[]).is_err(), "a prefix is not the metric");
        assert!(page.sum("peerpull_routing_walks_total", &[]).is_err());
        Ok(())
    }
}

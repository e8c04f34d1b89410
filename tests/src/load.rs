//! [`Load`]: concurrent HTTP callers of `serve` processes'
//! `GET /v1/accounts/{id}/access-token` until stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cluster::API_KEY;

/// Running callers.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<BTreeMap<String, u64>>,
}

impl Load {
    /// `callers` tasks, each calling a random server of `servers` for a
    /// random account of `ids` in a loop.
    pub fn start(servers: &[String], ids: &[i64], callers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let (stop, client) = (Arc::clone(&stop), client.clone());
            let (servers, ids) = (servers.to_vec(), ids.to_vec());
            tasks.spawn(async move {
                let mut outcomes = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let server = &servers[fastrand::usize(..servers.len())];
                    let id = ids[fastrand::usize(..ids.len())];
                    let outcome = match client
                        .get(format!("{server}/v1/accounts/{id}/access-token"))
                        .bearer_auth(API_KEY)
                        .send()
                        .await
                    {
                        Ok(response) => response.status().as_u16().to_string(),
                        Err(_) => "transport error".to_owned(),
                    };
                    *outcomes.entry(outcome).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                outcomes
            });
        }
        Self { stop, tasks }
    }

    /// Stops the callers; the number of answers by status.
    pub async fn stop(mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = BTreeMap::new();
        while let Some(done) = self.tasks.join_next().await {
            for (status, n) in done.expect("caller task") {
                *all.entry(status).or_default() += n;
            }
        }
        all
    }
}

/// Scrapes `url/metrics` and sums the samples of `name` whose label set
/// contains `label` (e.g. `layer="redis"`).
pub async fn metric(url: &str, name: &str, label: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' ']).next() == Some(name) && (label.is_empty() || l.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

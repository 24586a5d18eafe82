//! `genq-bench cluster`: no-op drain throughput on a private three-primary Redis
//! Cluster beside a private single Redis, same jobs, same worker, median of a few
//! runs each.

use anyhow::Context;
use genq_testkit::{PrivateRedis, RedisClusterNodes};

use crate::{genq_side, now_us};

/// What one comparison runs.
pub struct ClusterSizes {
    pub jobs: usize,
    pub queues: usize,
    pub concurrency: usize,
    pub runs: usize,
}

/// Queue names whose hash tags spread over the three shards of a fresh cluster
/// (slots split evenly by `redis-cli --cluster create`), repeated as needed.
const SPREAD: [&str; 6] = ["text", "img", "delivery", "video", "default", "beta"];

fn queue_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i / SPREAD.len() {
            0 => SPREAD[i].to_owned(),
            round => format!("{}{round}", SPREAD[i % SPREAD.len()]),
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Drains `runs` times on the server(s) at `url`, each run in a fresh namespace.
async fn drains(url: &str, label: &str, s: &ClusterSizes) -> anyhow::Result<Vec<f64>> {
    let queues = queue_names(s.queues);
    let mut out = Vec::new();
    for run in 1..=s.runs {
        eprintln!("[{label}] drain run {run} of {}…", s.runs);
        let ns = format!("genqbench-{label}-{}", now_us());
        out.push(genq_side::drain_queues(url, &ns, &queues, s.jobs, s.concurrency).await?);
    }
    Ok(out)
}

pub async fn run(s: &ClusterSizes) -> anyhow::Result<()> {
    anyhow::ensure!(
        s.queues > 0 && s.runs > 0 && s.concurrency > 0 && s.jobs >= 1000 * s.queues,
        "--queues, --runs and --concurrency must be at least 1, --jobs at least 1000 per queue"
    );
    let single = PrivateRedis::start()
        .await
        .context("starting a private redis-server")?;
    let single_runs = drains(&single.url(), "single", s).await?;
    drop(single);
    let cluster = RedisClusterNodes::start()
        .await
        .context("starting a three-primary Redis Cluster")?;
    let cluster_runs = drains(&cluster.url(), "cluster", s).await?;
    drop(cluster);

    let (single_med, cluster_med) = (median(single_runs.clone()), median(cluster_runs.clone()));
    let fmt = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "no-op drain: {} jobs over {} queues, one worker (all middleware), concurrency {} per queue; \
         median of {} run(s)",
        s.jobs / 1000 / s.queues * 1000 * s.queues,
        s.queues,
        s.concurrency,
        s.runs
    );
    println!("{:<36}{:>14}   runs", "", "jobs/s");
    println!(
        "{:<36}{:>14.0}   {}",
        "single Redis",
        single_med,
        fmt(&single_runs)
    );
    println!(
        "{:<36}{:>14.0}   {}",
        "Redis Cluster, 3 primaries",
        cluster_med,
        fmt(&cluster_runs)
    );
    println!(
        "{:<36}{:>13.2}x",
        "cluster / single",
        cluster_med / single_med
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_distinct_and_the_median_is_the_middle() {
        let names = queue_names(8);
        assert_eq!(names[..6], SPREAD.map(str::to_owned));
        assert_eq!(names[6..], ["text1".to_owned(), "img1".to_owned()]);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}

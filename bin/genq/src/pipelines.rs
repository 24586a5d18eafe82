//! `genq pipelines …`: list pipelines by state, show one in full (its stage
//! timeline), start one, answer a gate, cancel one.

use anyhow::bail;
use clap::Subcommand;
use genq_pipeline::{PipelineCancel, PipelineClient, PipelineState};
use genq_runtime::RedisArgs;

use crate::{connect, print_json};

#[derive(Debug, Subcommand)]
pub enum PipelinesCommand {
    /// Pipelines in a state (queued, active, parked, finished), newest first; with
    /// no state, how many are in each.
    List {
        state: Option<PipelineState>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// One pipeline in full: stages with their times, jobs, the open gate and its
    /// deadline, outputs so far.
    Show {
        id: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Start an unpaid pipeline: genq pipelines start probe-flow '{"items":5}'.
    Start {
        pipeline_type: String,
        /// Its input, JSON.
        #[arg(default_value = "{}")]
        input: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Answer a gate: genq pipelines signal <id> review approve [--body '{…}'].
    Signal {
        id: String,
        gate: String,
        choice: String,
        /// A small JSON body passed on to the next stage.
        #[arg(long, default_value = "null")]
        body: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// Cancel a pipeline (its running jobs are stopped, a paid one is refunded).
    Cancel {
        id: String,
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
        #[command(flatten)]
        redis: RedisArgs,
    },
}

pub async fn run(command: PipelinesCommand, config: &genq_config::Config) -> anyhow::Result<()> {
    match command {
        PipelinesCommand::List {
            state,
            limit,
            redis,
        } => {
            let client = PipelineClient::new(connect(&redis).await?);
            match state {
                Some(state) => print_json(&client.list(state, limit).await?)?,
                None => print_json(&client.counts().await?)?,
            }
        }
        PipelinesCommand::Show { id, redis } => {
            let client = PipelineClient::new(connect(&redis).await?);
            match client.view(&id).await? {
                Some(v) => print_json(&v)?,
                None => bail!("no pipeline {id} (unknown, or its data expired)"),
            }
        }
        PipelinesCommand::Start {
            pipeline_type,
            input,
            redis,
        } => {
            let input: serde_json::Value = serde_json::from_str(&input)
                .map_err(|e| anyhow::anyhow!("the input is not JSON: {e}"))?;
            let known = genq_catalog::pipelines_for(config)?.names();
            if !known.contains(&pipeline_type) {
                bail!(
                    "unknown pipeline type '{pipeline_type}' (known: {})",
                    known.join(", ")
                );
            }
            let client = PipelineClient::new(connect(&redis).await?);
            println!("{}", client.start(&pipeline_type, &input).await?);
        }
        PipelinesCommand::Signal {
            id,
            gate,
            choice,
            body,
            redis,
        } => {
            let body: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| anyhow::anyhow!("--body is not JSON: {e}"))?;
            let client = PipelineClient::new(connect(&redis).await?);
            match client.signal(&id, &gate, &choice, &body).await? {
                Ok(accepted) => print_json(&accepted)?,
                Err(refused) => bail!("signal refused: {refused}"),
            }
        }
        PipelinesCommand::Cancel { id, reason, redis } => {
            let client = PipelineClient::new(connect(&redis).await?);
            match client.cancel(&id, &reason).await? {
                PipelineCancel::Cancelled => println!("cancelled {id}"),
                PipelineCancel::Missing => bail!("no pipeline {id}"),
                PipelineCancel::AlreadyEnded(outcome) => {
                    bail!("pipeline {id} had already ended: {outcome}")
                }
            }
        }
    }
    Ok(())
}

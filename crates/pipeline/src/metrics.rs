pub use genq_metrics::PipelineMetrics;

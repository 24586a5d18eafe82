//! PostgreSQL settings every binary that opens the store shares (flags and environment).

use crate::{Store, StoreConfig, StoreError};

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(
        long = "database-url",
        env = "GENQ_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub url: String,
    /// Schema (search_path) to use instead of the user's default.
    #[arg(long = "database-schema", env = "GENQ_DATABASE_SCHEMA")]
    pub schema: Option<String>,
    /// Pooled connections.
    #[arg(
        long = "database-max-connections",
        env = "GENQ_DATABASE_MAX_CONNECTIONS",
        default_value_t = 20
    )]
    pub max_connections: u32,
}

impl DatabaseArgs {
    pub fn to_config(&self) -> StoreConfig {
        let mut cfg = StoreConfig::new(&self.url);
        cfg.schema = self.schema.clone().filter(|s| !s.is_empty());
        cfg.max_connections = self.max_connections;
        cfg
    }

    /// Connects and applies pending migrations.
    pub async fn open(&self) -> Result<Store, StoreError> {
        Store::open(&self.to_config()).await
    }
}

use std::{collections::BTreeMap, sync::Arc};

use crate::{Pipeline, PipelineError};

/// The pipeline types a process knows, by name.
#[derive(Debug, Clone, Default)]
pub struct PipelineRegistry {
    types: BTreeMap<String, Arc<Pipeline>>,
}

impl PipelineRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a pipeline type (checked; a name registered twice is refused).
    pub fn register(&mut self, pipeline: Pipeline) -> Result<&mut Self, PipelineError> {
        let bad = |problem: String| PipelineError::Definition {
            pipeline: pipeline.name.clone(),
            problem,
        };
        pipeline.validate().map_err(bad)?;
        if self.types.contains_key(&pipeline.name) {
            return Err(bad("registered twice".to_owned()));
        }
        self.types.insert(pipeline.name.clone(), Arc::new(pipeline));
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Pipeline>, PipelineError> {
        self.types
            .get(name)
            .cloned()
            .ok_or_else(|| PipelineError::UnknownType(name.to_owned()))
    }

    pub fn names(&self) -> Vec<String> {
        self.types.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

//! The job types genq ships. A new job type is a crate under `jobs/` plus one line
//! in [`registry`]; nothing else in the framework changes.

use genq_core::{Registry, RegistryError};

/// Every shipped job type on its default queue, then `routes` applied
/// (`type=queue,...`, e.g. from `GENQ_ROUTES`).
pub fn registry(routes: Option<&str>) -> Result<Registry, RegistryError> {
    let mut r = Registry::new();
    r.register(genq_job_probe::ProbeJob::new())?;
    if let Some(routes) = routes {
        r.apply_routes(routes)?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ships_the_probe_and_applies_routes() {
        let r = super::registry(Some("probe=img")).unwrap();
        assert_eq!(r.queue_of("probe").unwrap(), "img");
        assert!(super::registry(Some("nope=img")).is_err());
    }
}

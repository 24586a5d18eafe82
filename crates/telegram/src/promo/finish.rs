//! How a promo video ends for the user: the video (captioned with the script's
//! title), or one text chosen by the stage it stopped at and its failure class,
//! with the refund (the settler refunds; the bot only says so). The pipeline's
//! files (pictures, clips, voice-over, video) are deleted once the ending went out.

use genq_core::{FailureClass, JobStatus};
use serde_json::Value;
use tracing::{debug, warn};

use crate::{app::BotApp, delivery::tracking::Tracked, promo::text::Ending};

/// The one final text of a promo video that did not succeed.
pub(crate) async fn ending_text(
    app: &BotApp,
    tracked: &Tracked,
    status: JobStatus,
    class: Option<FailureClass>,
) -> String {
    let view = match app.pipelines.view(&tracked.job_id).await {
        Ok(v) => v,
        Err(e) => {
            warn!(job_id = %tracked.job_id, error = %e, "promo view unreadable; ending by class only");
            None
        }
    };
    let stage = view.as_ref().and_then(|v| {
        let i = usize::try_from(v.failed_stage?).ok()?;
        v.stages.get(i).map(|s| s.name.clone())
    });
    let ending = Ending::of(status.as_str(), class, stage.as_deref());
    let minutes = app
        .offers
        .promo
        .as_ref()
        .map_or(10, |p| p.approval_timeout.as_secs().div_ceil(60));
    let text = ending.text(tracked.lang, tracked.price, minutes);
    match (ending.names_support(), app.cfg.support_contact.as_deref()) {
        (true, Some(contact)) => format!(
            "{}\n{}",
            text.trim(),
            crate::i18n::t(tracked.lang, "support.contact", &[("contact", &contact)])
        ),
        _ => text,
    }
}

/// Every artifact key in a step output (`artifact.key`) or the result.
fn keys_in(v: &Value, out: &mut Vec<String>) {
    if let Some(k) = v["artifact"]["key"].as_str() {
        out.push(k.to_owned());
    }
}

/// Deletes the pipeline's files (best effort: Cleanup's age sweep removes what is
/// left). Called after the final message went out.
pub(crate) async fn remove_files(app: &BotApp, id: &str) {
    let view = match app.pipelines.view(id).await {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(e) => {
            warn!(job_id = id, error = %e, "promo files not deleted now; Cleanup will");
            return;
        }
    };
    let mut keys = Vec::new();
    for step in view.stages.iter().flat_map(|s| s.steps.iter()) {
        if let Some(o) = &step.output {
            keys_in(o, &mut keys);
        }
    }
    if let Some(r) = &view.result {
        keys_in(r, &mut keys);
    }
    keys.sort();
    keys.dedup();
    for key in &keys {
        if let Err(e) = app.artifacts.delete(key).await {
            debug!(job_id = id, key, error = %e, "promo file not deleted");
        }
    }
}

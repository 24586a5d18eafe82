//! The `promo` pipeline type: a brief becomes a promo video.
//!
//! `script` (write_script) → gate `approve_script` → `images` (generate_image per
//! segment, in segment order, `image_parallelism` at once) → gate `approve_images`
//! → `clips` (generate_video image-to-video per image, the segment's animation
//! prompt, `segment_secs` long, `clip_parallelism` at once; a clip's provider task
//! is submitted once however often its job runs) → gate `approve_clips` → `voice`
//! (voice_over of all narration, fitted to the video's length) → `assemble`
//! (assemble_video). Its result is `assemble`'s output. Every gate waits
//! `approval_timeout_secs`; the price is `promo.price`. All from `[promo]`.

use std::{sync::Arc, time::Duration};

use genq_config::PromoSettings;
use genq_core::Job;
use genq_job_assemble_video::{AssembleRequest, AssembleVideo};
use genq_job_generate_image::{GenerateImage, ImageRequest};
use genq_job_generate_video::{GenerateVideo, Template, VideoOutput, VideoRequest};
use genq_job_voice_over::{VoiceOutput, VoiceOver, VoiceRequest};
use genq_job_write_script::{Layout, Script, ScriptRequest, WriteScript};
use genq_jobkit::ImageOutput;
use genq_pipeline::{BuildError, Pipeline, StageInput, StepSpec};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The pipeline type's name.
pub const PROMO: &str = "promo";

/// The stage names, in order.
pub mod stages {
    pub const SCRIPT: &str = "script";
    pub const APPROVE_SCRIPT: &str = "approve_script";
    pub const IMAGES: &str = "images";
    pub const APPROVE_IMAGES: &str = "approve_images";
    pub const CLIPS: &str = "clips";
    pub const APPROVE_CLIPS: &str = "approve_clips";
    pub const VOICE: &str = "voice";
    pub const ASSEMBLE: &str = "assemble";
}

/// The choice that passes each of the promo's gates (`cancel` ends the pipeline).
pub const APPROVE: &str = "approve";

/// The input of a `promo` pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoInput {
    pub brief: String,
    /// The narration's language (e.g. `en`, `ru`).
    pub lang: String,
}

/// What the stage builders need from `[promo]`.
#[derive(Debug, Clone)]
struct Plan {
    layout: Layout,
    width: u32,
    height: u32,
    voice: String,
    speech_model: String,
}

impl Plan {
    fn new(s: &PromoSettings) -> Self {
        let (width, height) = s.image_dimensions().unwrap_or((1024, 1792));
        Self {
            layout: Layout {
                intro: s.intro,
                main: s.main,
                outro: s.outro,
                segment_secs: s.segment_secs,
            },
            width,
            height,
            voice: s.voice.clone(),
            speech_model: s.speech_model.clone(),
        }
    }
}

/// The `promo` pipeline type for these settings (see the module docs).
pub fn promo(settings: &PromoSettings) -> Pipeline {
    let plan = Arc::new(Plan::new(settings));
    let timeout = Duration::from_secs(settings.approval_timeout_secs);
    let price = settings.price.max(0);
    let (p1, p2, p3, p4, p5) = (plan.clone(), plan.clone(), plan.clone(), plan.clone(), plan);
    Pipeline::new(PROMO)
        .step(stages::SCRIPT, move |si| script_step(&p1, si))
        .gate(stages::APPROVE_SCRIPT, timeout)
        .fan_out(stages::IMAGES, settings.image_parallelism, move |si| {
            image_steps(&p2, si)
        })
        .gate(stages::APPROVE_IMAGES, timeout)
        .fan_out(stages::CLIPS, settings.clip_parallelism, move |si| {
            clip_steps(&p3, si)
        })
        .gate(stages::APPROVE_CLIPS, timeout)
        .step(stages::VOICE, move |si| voice_step(&p4, si))
        .step(stages::ASSEMBLE, move |si| assemble_step(&p5, si))
        .price(move |_| price)
}

/// Reads an earlier stage's output as `T`.
fn output<T: DeserializeOwned>(si: &StageInput<'_>, stage: &str) -> Result<T, BuildError> {
    let value = si
        .output(stage)
        .ok_or_else(|| BuildError::new(format!("stage '{stage}' has no output")))?;
    serde_json::from_value(value.clone())
        .map_err(|e| BuildError::new(format!("stage '{stage}''s output is not usable: {e}")))
}

fn spec<T: Serialize>(job_type: &str, payload: &T) -> Result<StepSpec, BuildError> {
    serde_json::to_value(payload)
        .map(|p| StepSpec::new(job_type, p))
        .map_err(|e| BuildError::new(format!("{job_type} payload: {e}")))
}

/// The pipeline's input, checked.
fn input(si: &StageInput<'_>) -> Result<PromoInput, BuildError> {
    let i: PromoInput = serde_json::from_value(si.input.clone())
        .map_err(|e| BuildError::new(format!("promo input: {e}")))?;
    if i.brief.trim().is_empty() {
        return Err(BuildError::new("promo input: the brief is empty"));
    }
    Ok(i)
}

fn script_step(plan: &Plan, si: &StageInput<'_>) -> Result<StepSpec, BuildError> {
    let i = input(si)?;
    let request = ScriptRequest {
        brief: i.brief,
        lang: i.lang,
        layout: plan.layout,
    };
    spec(<WriteScript as Job>::NAME, &request)
}

fn image_steps(plan: &Plan, si: &StageInput<'_>) -> Result<Vec<StepSpec>, BuildError> {
    let script: Script = output(si, stages::SCRIPT)?;
    script
        .segments
        .iter()
        .map(|s| {
            let request = ImageRequest {
                prompt: s.image_prompt.clone(),
                width: plan.width,
                height: plan.height,
            };
            spec(<GenerateImage as Job>::NAME, &request)
        })
        .collect()
}

fn clip_steps(plan: &Plan, si: &StageInput<'_>) -> Result<Vec<StepSpec>, BuildError> {
    let script: Script = output(si, stages::SCRIPT)?;
    let images: Vec<ImageOutput> = output(si, stages::IMAGES)?;
    if images.len() != script.segments.len() {
        return Err(BuildError::new(format!(
            "{} images for {} segments",
            images.len(),
            script.segments.len()
        )));
    }
    script
        .segments
        .iter()
        .zip(&images)
        .map(|(s, image)| {
            let request = VideoRequest {
                prompt: s.animation_prompt.clone(),
                template: Template::Custom,
                image: Some(image.artifact.key.clone()),
                seconds: plan.layout.segment_secs,
            };
            spec(<GenerateVideo as Job>::NAME, &request)
        })
        .collect()
}

fn voice_step(plan: &Plan, si: &StageInput<'_>) -> Result<StepSpec, BuildError> {
    let script: Script = output(si, stages::SCRIPT)?;
    let request = VoiceRequest {
        text: script.narration(),
        voice: plan.voice.clone(),
        model: Some(plan.speech_model.clone()),
        target_secs: f64::from(plan.layout.segment_secs) * script.segments.len() as f64,
    };
    spec(<VoiceOver as Job>::NAME, &request)
}

fn assemble_step(plan: &Plan, si: &StageInput<'_>) -> Result<StepSpec, BuildError> {
    let script: Script = output(si, stages::SCRIPT)?;
    let clips: Vec<VideoOutput> = output(si, stages::CLIPS)?;
    let voice: VoiceOutput = output(si, stages::VOICE)?;
    let request = AssembleRequest {
        clips: clips.into_iter().map(|c| c.artifact.key).collect(),
        audio: voice.artifact.key,
        segment_secs: plan.layout.segment_secs,
        title: Some(script.title),
    };
    spec(<AssembleVideo as Job>::NAME, &request)
}

/// The stage names of `promo`, in order (for callers that show progress).
pub fn promo_stage_names() -> [&'static str; 8] {
    [
        stages::SCRIPT,
        stages::APPROVE_SCRIPT,
        stages::IMAGES,
        stages::APPROVE_IMAGES,
        stages::CLIPS,
        stages::APPROVE_CLIPS,
        stages::VOICE,
        stages::ASSEMBLE,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use genq_pipeline::StageKind;
    use serde_json::{Value, json};

    fn settings() -> PromoSettings {
        PromoSettings {
            enabled: true,
            image_size: "576x1024".into(),
            ..PromoSettings::default()
        }
    }

    fn script(n: u32) -> Value {
        let segments: Vec<Value> = (0..n)
            .map(|i| {
                json!({"index": i, "part": "main", "start_secs": i * 5, "end_secs": i * 5 + 5,
                   "narration": format!("line {i}"), "image_prompt": format!("image {i}"),
                   "animation_prompt": format!("move {i}")})
            })
            .collect();
        json!({"title": "T", "segments": segments})
    }

    #[test]
    fn stages_are_named_and_kinded_as_the_bot_expects() {
        let p = promo(&settings());
        p.validate().unwrap();
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, promo_stage_names());
        assert_eq!(p.stages[0].kind, StageKind::Step);
        assert_eq!(p.stages[2].kind, StageKind::FanOut { parallelism: 3 });
        match &p.stages[1].kind {
            StageKind::Gate { timeout, choices } => {
                assert_eq!(*timeout, Duration::from_secs(600));
                assert_eq!(choices, &["approve", "cancel"]);
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(p.price_of(&json!({})), 50);
    }

    #[test]
    fn stages_build_their_jobs_from_what_came_before() {
        let plan = Plan::new(&settings());
        let input = json!({"brief": "coffee", "lang": "en"});
        let mut outputs = vec![];
        let si = StageInput {
            input: &input,
            outputs: &outputs,
        };
        let s = script_step(&plan, &si).unwrap();
        assert_eq!(s.job_type, "write_script");
        assert_eq!(s.payload["layout"]["segment_secs"], 5);

        outputs.push(("script".to_owned(), script(2)));
        let si = StageInput {
            input: &input,
            outputs: &outputs,
        };
        let images = image_steps(&plan, &si).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(
            images[1].payload,
            json!({"prompt": "image 1", "width": 576, "height": 1024})
        );

        let image = |k: &str| json!({"artifact": {"key": k, "content_type": "image/png", "bytes": 1}, "width": 1, "height": 1, "format": "png"});
        outputs.push(("images".to_owned(), json!([image("a.png"), image("b.png")])));
        let si = StageInput {
            input: &input,
            outputs: &outputs,
        };
        let clips = clip_steps(&plan, &si).unwrap();
        assert_eq!(clips[1].job_type, "generate_video");
        assert_eq!(clips[1].payload["image"], "b.png");
        assert_eq!(clips[1].payload["prompt"], "move 1");
        assert_eq!(clips[1].payload["seconds"], 5);

        let voice = voice_step(&plan, &si).unwrap();
        assert_eq!(voice.payload["text"], "line 0 line 1");
        assert_eq!(voice.payload["target_secs"], 10.0);

        let clip = |k: &str| json!({"artifact": {"key": k, "content_type": "video/mp4", "bytes": 1}, "duration_secs": 1.0, "width": 1, "height": 1, "reencoded": false});
        outputs.push(("clips".to_owned(), json!([clip("a.mp4"), clip("b.mp4")])));
        outputs.push(("voice".to_owned(), json!({"artifact": {"key": "v.m4a", "content_type": "audio/mp4", "bytes": 1}, "duration_secs": 10.0, "plan": "x"})));
        let si = StageInput {
            input: &input,
            outputs: &outputs,
        };
        let a = assemble_step(&plan, &si).unwrap();
        assert_eq!(
            a.payload,
            json!({"clips": ["a.mp4", "b.mp4"], "audio": "v.m4a", "segment_secs": 5, "title": "T"})
        );
    }

    #[test]
    fn bad_input_and_missing_outputs_are_build_errors() {
        let plan = Plan::new(&settings());
        let bad = json!({"brief": "x", "lang": "en", "extra": 1});
        let si = StageInput {
            input: &bad,
            outputs: &[],
        };
        assert!(
            script_step(&plan, &si)
                .unwrap_err()
                .0
                .contains("unknown field")
        );
        let empty = json!({"brief": " ", "lang": "en"});
        let si = StageInput {
            input: &empty,
            outputs: &[],
        };
        assert!(script_step(&plan, &si).is_err());
        let ok = json!({"brief": "x", "lang": "en"});
        let si = StageInput {
            input: &ok,
            outputs: &[],
        };
        assert!(
            image_steps(&plan, &si)
                .unwrap_err()
                .0
                .contains("'script' has no output")
        );
    }
}

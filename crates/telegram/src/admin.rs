//! `/admin` for the Telegram ids in `bot.admin_ids`: users, active users, retention,
//! today's jobs and failures by type, queue depths.

use std::collections::BTreeMap;

use chrono::Duration;
use genq_store::RetentionCohort;

use crate::{BotError, app::BotApp, conversation::requester::Requester, i18n::t};

/// Today (UTC), the day reports are about.
fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Share of a cohort back on day `n`, over cohorts old enough to tell, in percent.
fn retention_rate(
    cohorts: &[RetentionCohort],
    n: i64,
    pick: fn(&RetentionCohort) -> i64,
) -> String {
    let today = today();
    let (back, size) = cohorts
        .iter()
        .filter(|c| c.cohort_day + Duration::days(n) <= today)
        .fold((0, 0), |(b, s), c| (b + pick(c), s + c.size));
    if size == 0 {
        "–".to_owned()
    } else {
        format!("{:.0}%", back as f64 * 100.0 / size as f64)
    }
}

pub(crate) async fn admin(app: &BotApp, who: &Requester, text: &str) -> Result<(), BotError> {
    if !app.cfg.admin_ids.contains(&who.tg_user) {
        app.say_to(who, &t(who.lang, "admin.denied", &[]), None)
            .await?;
        return Ok(());
    }
    let mut words = text.split_whitespace().skip(1);
    if words.next() == Some("refund") {
        let args: Vec<&str> = words.collect();
        let answer = crate::payments::admin_refund(app, who, &args.join(" ")).await;
        app.say_to(who, &answer, None).await?;
        return Ok(());
    }
    let day = today();
    let users = app.store.user_stats(day).await?;
    let cohorts = app.store.retention(day - Duration::days(60), day).await?;
    let mut by_type: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in app.store.jobs_per_day(day, day).await? {
        let entry = by_type.entry(row.job_type).or_default();
        entry.0 += row.jobs;
        if row.status == "failed" {
            entry.1 += row.jobs;
        }
    }
    let jobs_today: i64 = by_type.values().map(|v| v.0).sum();
    let failed_today: i64 = by_type.values().map(|v| v.1).sum();
    let by_type_lines = by_type
        .iter()
        .map(|(job_type, (total, failed))| {
            t(
                who.lang,
                "admin.type_line",
                &[("job_type", job_type), ("total", total), ("failed", failed)],
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut queues = app.offers.queues();
    queues.push(app.cfg.delivery_queue.clone());
    let mut queue_lines = Vec::new();
    for q in queues {
        let s = app.queue.stats(&q).await?;
        queue_lines.push(t(
            who.lang,
            "admin.queue_line",
            &[
                ("queue", &q),
                ("ready", &s.ready),
                ("scheduled", &s.scheduled),
                ("running", &s.running),
                ("dead", &s.dead),
            ],
        ));
    }
    let text = t(
        who.lang,
        "admin.stats",
        &[
            ("users", &users.total),
            ("active_1d", &users.active_1d),
            ("active_7d", &users.active_7d),
            ("active_30d", &users.active_30d),
            ("d1", &retention_rate(&cohorts, 1, |c| c.d1)),
            ("d7", &retention_rate(&cohorts, 7, |c| c.d7)),
            ("d30", &retention_rate(&cohorts, 30, |c| c.d30)),
            ("jobs_today", &jobs_today),
            ("failed_today", &failed_today),
            ("by_type", &by_type_lines),
            ("queues", &queue_lines.join("\n")),
        ],
    );
    app.say_to(who, &text, None).await?;
    Ok(())
}

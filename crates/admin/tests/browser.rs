//! The admin web page in a real headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini): without the token it shows the API's 401 message;
//! with it, it lists a dead letter made for real by a worker, and its Retry button
//! puts the job back on its queue.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `scripts/services.sh` installs them) and the shared Redis.
//! Fails, naming what is missing, when the browser cannot start.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use genq_admin_api::{AdminMetrics, AdminState};
use genq_core::{JobStatus, Registry};
use genq_job_probe::ProbeJob;
use genq_metrics::WorkerMetrics;
use genq_redis::{RedisConfig, RedisQueue};
use genq_runtime::{JobClient, WorkerRuntime, WorkerSettings};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TOKEN: &str = "browser-test-token-0123456789";
const QUEUE: &str = "default";
/// The bound of every wait.
const WAIT: Duration = Duration::from_secs(20);
const UNAUTHORIZED: &str = "missing or wrong bearer token";

/// chromedriver (and the Chromium it starts: same process group) plus the
/// browser's profile directory; killed and removed when dropped, even on a panic.
struct Chromedriver {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Chromedriver {
    fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install the Debian package `{package}` \
                 (scripts/services.sh does: apt-get install chromium chromium-driver)"
            );
        }
        let port = genq_testkit::free_port();
        let dir = std::env::temp_dir().join(format!(
            "genq-browser-test-{}-{port}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(dir.join("profile")).expect("create the browser's temp dir");
        let log = std::fs::File::create(dir.join("chromedriver.log")).expect("chromedriver log");
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("chromedriver log"))
                .stderr(log)
                // Its own process group, so that Chromium goes with it.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"))
        };
        Self { child, port, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default()
    }

    /// A WebDriver session in a fresh headless Chromium; fails naming the cause.
    async fn session(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-quic",
                    format!("--user-data-dir={}", self.dir.join("profile").display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + WAIT;
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let err = match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => return client,
                Err(e) => e,
            };
            // chromedriver not listening yet: try again; anything else is final.
            let listening = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if listening || Instant::now() >= deadline {
                panic!(
                    "headless Chromium did not start through chromedriver ({CHROMEDRIVER} on port {}, \
                     browser {CHROMIUM}; Debian packages `chromium` and `chromium-driver`): {err}\n\
                     chromedriver's output:\n{}",
                    self.port,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` until it returns `Some`, or panics after [`WAIT`] with `what` and
/// the last thing seen.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            panic!("the page never showed {what} within {WAIT:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`, if there is one (the page
/// rebuilds its tables on each refresh, so an element can go stale: read afresh).
async fn text(browser: &Client, css: &str) -> Option<String> {
    let el = browser.find(Locator::Css(css)).await.ok()?;
    el.text().await.ok().map(|t| t.trim().to_owned())
}

async fn queue_cell(browser: &Client, class: &str) -> Option<String> {
    text(
        browser,
        &format!("#queues tr[data-queue=\"{QUEUE}\"] td.{class}"),
    )
    .await
}

/// Makes a dead letter for real: a probe told to fail with bad input, run by an
/// in-process worker serving `default`, which is stopped once the job is dead.
async fn make_dead_letter(queue: &RedisQueue, registry: Arc<Registry>) -> String {
    let prom = prometheus::Registry::new();
    let mut settings = WorkerSettings::new(vec![QUEUE.to_owned()]);
    settings.concurrency = 4;
    settings.grace = Duration::from_secs(2);
    settings.stats_interval = Duration::from_millis(200);
    let runtime = WorkerRuntime::start(
        registry.clone(),
        queue.clone(),
        WorkerMetrics::new(&prom).expect("worker metrics"),
        settings,
    )
    .await
    .expect("start the worker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(runtime.run(async move {
        let _ = stopped.await;
    }));
    let id = JobClient::new(queue.clone(), registry)
        .enqueue_json(
            "probe",
            &json!({ "fail": { "class": "bad_input" } }).to_string(),
            Default::default(),
        )
        .await
        .expect("push the probe")
        .id;
    let dead = genq_testkit::wait_until(WAIT, || async {
        let job = queue.job(QUEUE, &id).await.ok()??;
        (job.status == JobStatus::Failed).then_some(job)
    })
    .await;
    let _ = stop.send(());
    worker
        .await
        .expect("worker task")
        .expect("worker stopped cleanly");
    let dead = dead.unwrap_or_else(|| panic!("job {id} was not dead-lettered within {WAIT:?}"));
    assert_eq!(dead.attempts, 1, "bad input is not retried: {dead:?}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_shows_a_dead_letter_and_retries_it() {
    let url = genq_testkit::redis_url();
    let prefix = genq_testkit::unique_prefix("admin-browser");
    let config = RedisConfig {
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(300),
        poll_interval: Duration::from_millis(200),
        ..RedisConfig::with_url(&url).prefix(&prefix)
    };
    let queue = RedisQueue::connect(config).await.expect("connect to Redis");
    let mut registry = Registry::new();
    registry.register(ProbeJob::new()).expect("register probe");
    let registry = Arc::new(registry);

    // In a task of its own, so that a failure still reaches the clean-up below.
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::spawn(run(queue.clone(), registry.clone())),
    )
    .await;
    genq_testkit::cleanup_prefix(&url, &prefix).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the browser test's task failed: {e}"),
        Err(_) => panic!("the browser test took over 120 s"),
    }
}

async fn run(queue: RedisQueue, registry: Arc<Registry>) {
    let id = make_dead_letter(&queue, registry.clone()).await;

    // The admin, with a token, on a free port.
    let prom = prometheus::Registry::new();
    let state = Arc::new(AdminState {
        client: JobClient::new(queue.clone(), registry),
        queue: queue.clone(),
        store: None,
        keys: Vec::new(),
        token: Some(TOKEN.to_owned()),
        metrics: AdminMetrics::new(&prom).expect("admin metrics"),
        prom,
        webhooks: Vec::new(),
    });
    let (router, _) = genq_admin_api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the admin");
    let addr = listener.local_addr().expect("admin address");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let driver = Chromedriver::start();
    let browser = driver.session().await;
    let outcome = drive(&browser, &format!("http://{addr}/"), &id).await;
    let _ = browser.close().await;
    drop(driver);
    server.abort();
    outcome.unwrap_or_else(|e| panic!("WebDriver command failed: {e}"));

    let job = queue
        .job(QUEUE, &id)
        .await
        .expect("read the job")
        .expect("the retried job still exists");
    assert_eq!(job.status, JobStatus::Queued, "{job:?}");
}

async fn drive(browser: &Client, page: &str, id: &str) -> Result<(), fantoccini::error::CmdError> {
    browser.goto(page).await?;

    // No token yet (fresh profile): the API's 401 message, and no data.
    let status = wait_for("the 401 message in #status", || async {
        match text(browser, "#status").await {
            Some(t) if t.contains(UNAUTHORIZED) => Ok(t),
            other => Err(format!("#status = {other:?}")),
        }
    })
    .await;
    assert!(status.contains("GENQ_ADMIN_TOKEN"), "{status}");
    assert_eq!(
        browser
            .execute("return document.body.dataset.loaded || null", vec![])
            .await?,
        serde_json::Value::Null,
        "nothing loaded without the token"
    );

    // The token: the queue shows its dead letter.
    browser
        .find(Locator::Css("#token"))
        .await?
        .send_keys(TOKEN)
        .await?;
    browser
        .find(Locator::Css("#save-token"))
        .await?
        .click()
        .await?;
    // `loaded` is set at the end of a successful refresh, after the tables are filled.
    wait_for("a successful refresh (body[data-loaded=yes])", || async {
        match browser
            .execute("return document.body.dataset.loaded || null", vec![])
            .await
        {
            Ok(v) if v == json!("yes") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    wait_for("dead = 1 for the default queue", || async {
        match queue_cell(browser, "dead").await {
            Some(t) if t == "1" => Ok(()),
            other => Err(format!("dead cell = {other:?}")),
        }
    })
    .await;
    let row = format!("#dead tr[data-job=\"{id}\"]");
    wait_for("the dead letter's row", || async {
        match text(browser, &row).await {
            Some(t) if t.contains("bad_input") => Ok(()),
            other => Err(format!("row = {other:?}")),
        }
    })
    .await;

    // Retry it (the tables are rebuilt on each refresh: find the button afresh if
    // it went stale before the click landed).
    let button = format!("{row} button.retry");
    wait_for("a clickable Retry button", || async {
        let el = browser
            .find(Locator::Css(&button))
            .await
            .map_err(|e| e.to_string())?;
        el.click().await.map_err(|e| e.to_string())
    })
    .await;

    wait_for("ready = 1, dead = 0 and no dead-letter row", || async {
        let ready = queue_cell(browser, "ready").await;
        let dead = queue_cell(browser, "dead").await;
        let rows = browser
            .find_all(Locator::Css(&row))
            .await
            .map(|r| r.len())
            .map_err(|e| e.to_string())?;
        match (ready.as_deref(), dead.as_deref(), rows) {
            (Some("1"), Some("0"), 0) => Ok(()),
            seen => Err(format!("(ready, dead, rows) = {seen:?}")),
        }
    })
    .await;
    let message = format!("job {id} is queued again");
    wait_for("the retry's message in #status", || async {
        match text(browser, "#status").await {
            Some(t) if t == message => Ok(()),
            other => Err(format!("#status = {other:?}")),
        }
    })
    .await;
    Ok(())
}

/// The page's Credits section: look a user up by Telegram id, grant with a reason
/// (the ledger shows it, with who did it), and a deduction below zero refused with
/// the API's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_grants_credits_and_shows_the_ledger() {
    let url = genq_testkit::redis_url();
    let prefix = genq_testkit::unique_prefix("admin-browser-credits");
    let queue = RedisQueue::connect(RedisConfig::with_url(&url).prefix(&prefix))
        .await
        .expect("connect to Redis");
    let schema = genq_testkit::TestSchema::create("admin_browser_credits")
        .await
        .expect("create a schema");
    let store =
        genq_store::Store::open(&genq_store::StoreConfig::new(&schema.url).schema(&schema.name))
            .await
            .expect("open the store");
    let (user, _) = store.welcome_user(8080, "en", 10).await.expect("a user");

    let mut registry = Registry::new();
    registry.register(ProbeJob::new()).expect("register probe");
    let prom = prometheus::Registry::new();
    let state = Arc::new(AdminState {
        client: JobClient::new(queue.clone(), Arc::new(registry)),
        queue: queue.clone(),
        store: Some(store.clone()),
        keys: Vec::new(),
        token: Some(TOKEN.to_owned()),
        metrics: AdminMetrics::new(&prom).expect("admin metrics"),
        prom,
        webhooks: Vec::new(),
    });
    let (router, _) = genq_admin_api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the admin");
    let addr = listener.local_addr().expect("admin address");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let result = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::spawn(async move {
            let driver = Chromedriver::start();
            let browser = driver.session().await;
            let outcome = drive_credits(&browser, &format!("http://{addr}/")).await;
            let _ = browser.close().await;
            drop(driver);
            outcome.unwrap_or_else(|e| panic!("WebDriver command failed: {e}"));
        }),
    )
    .await;
    server.abort();
    let balance = store.balance(user.id).await;
    let sum = store.ledger_sum(user.id).await;
    genq_testkit::cleanup_prefix(&url, &prefix).await;
    schema.drop().await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the browser test's task failed: {e}"),
        Err(_) => panic!("the browser test took over 120 s"),
    }
    assert_eq!(
        balance.expect("balance"),
        35,
        "10 + 25; the deduction refused"
    );
    assert_eq!(sum.expect("ledger sum"), 35);
}

async fn fill(browser: &Client, css: &str, value: &str) -> Result<(), fantoccini::error::CmdError> {
    let el = browser.find(Locator::Css(css)).await?;
    el.clear().await?;
    el.send_keys(value).await
}

async fn drive_credits(browser: &Client, page: &str) -> Result<(), fantoccini::error::CmdError> {
    browser.goto(page).await?;
    fill(browser, "#token", TOKEN).await?;
    browser
        .find(Locator::Css("#save-token"))
        .await?
        .click()
        .await?;

    fill(browser, "#credits-user", "8080").await?;
    browser
        .find(Locator::Css("#credits-show"))
        .await?
        .click()
        .await?;
    wait_for("the user's balance", || async {
        match text(browser, "#credits-balance").await {
            Some(t) if t == "User 8080: balance 10 credits" => Ok(()),
            other => Err(format!("#credits-balance = {other:?}")),
        }
    })
    .await;
    wait_for("the welcome grant in the ledger", || async {
        match text(browser, "#ledger tbody tr td.reason").await {
            Some(t) if t == "welcome" => Ok(()),
            other => Err(format!("first reason = {other:?}")),
        }
    })
    .await;

    // grant 25 with a reason
    fill(browser, "#credits-amount", "25").await?;
    fill(browser, "#credits-reason", "browser grant").await?;
    browser
        .find(Locator::Css("#credits-apply"))
        .await?
        .click()
        .await?;
    wait_for("the grant's message", || async {
        match text(browser, "#credits-status").await {
            Some(t) if t == "granted 25 credits to user 8080; balance 35" => Ok(()),
            other => Err(format!("#credits-status = {other:?}")),
        }
    })
    .await;
    wait_for("the grant at the top of the ledger", || async {
        let first = text(browser, "#ledger tbody tr").await;
        match &first {
            Some(t)
                if t.contains("grant")
                    && t.contains("+25")
                    && t.contains("browser grant")
                    && t.contains("operator:admin-api") =>
            {
                Ok(())
            }
            other => Err(format!("first row = {other:?}")),
        }
    })
    .await;
    assert_eq!(
        text(browser, "#credits-balance").await.as_deref(),
        Some("User 8080: balance 35 credits")
    );

    // a deduction below zero: refused, the API's message shown as an error
    browser
        .find(Locator::Css("#credits-action"))
        .await?
        .select_by_value("deduct")
        .await?;
    fill(browser, "#credits-amount", "100").await?;
    fill(browser, "#credits-reason", "too much").await?;
    browser
        .find(Locator::Css("#credits-apply"))
        .await?
        .click()
        .await?;
    wait_for("the refusal", || async {
        match text(browser, "#credits-status.error").await {
            Some(t) if t == "user 8080 has 35 credits; deducting 100 would make it negative" => {
                Ok(())
            }
            other => Err(format!("#credits-status.error = {other:?}")),
        }
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_lists_a_parked_pipeline_shows_its_stages_and_approves_it() {
    let url = genq_testkit::redis_url();
    let prefix = genq_testkit::unique_prefix("admin-browser-pipelines");
    let queue = RedisQueue::connect(RedisConfig::with_url(&url).prefix(&prefix))
        .await
        .expect("connect to Redis");
    let mut registry = Registry::new();
    registry.register(ProbeJob::new()).expect("register probe");
    let registry = Arc::new(registry);
    let stop = tokio_util::sync::CancellationToken::new();
    let driver = genq_pipeline::PipelineDriver::new(
        queue.clone(),
        genq_catalog::pipelines().expect("pipelines"),
        registry.clone(),
        vec!["default".to_owned()],
    );
    tokio::spawn(driver.run(stop.clone()));
    let client = genq_pipeline::PipelineClient::new(queue.clone());
    let id = client
        .start("probe-gate", &serde_json::json!({}))
        .await
        .expect("start a pipeline");
    wait_for("the pipeline to park", || async {
        match client.view(&id).await {
            Ok(Some(v)) if v.gate.is_some() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let prom = prometheus::Registry::new();
    let state = Arc::new(AdminState {
        client: JobClient::new(queue.clone(), registry),
        queue: queue.clone(),
        store: None,
        keys: Vec::new(),
        token: Some(TOKEN.to_owned()),
        metrics: AdminMetrics::new(&prom).expect("admin metrics"),
        prom,
        webhooks: Vec::new(),
    });
    let (router, _) = genq_admin_api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the admin");
    let addr = listener.local_addr().expect("admin address");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let page_id = id.clone();
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::spawn(async move {
            let driver = Chromedriver::start();
            let browser = driver.session().await;
            let outcome = drive_pipelines(&browser, &format!("http://{addr}/"), &page_id).await;
            let _ = browser.close().await;
            drop(driver);
            outcome.unwrap_or_else(|e| panic!("WebDriver command failed: {e}"));
        }),
    )
    .await;
    server.abort();
    let view = client.view(&id).await.expect("view").expect("pipeline");
    stop.cancel();
    genq_testkit::cleanup_prefix(&url, &prefix).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("the browser test's task failed: {e}"),
        Err(_) => panic!("the browser test took over 120 s"),
    }
    assert_eq!(
        view.stages[0]
            .decision
            .as_ref()
            .map(|d| d["choice"].clone()),
        Some(serde_json::json!("approve")),
        "the page's Approve answered the gate: {view:#?}"
    );
}

async fn drive_pipelines(
    browser: &Client,
    page: &str,
    id: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser.goto(page).await?;
    fill(browser, "#token", TOKEN).await?;
    browser
        .find(Locator::Css("#save-token"))
        .await?
        .click()
        .await?;
    let row = format!("#pipelines tr[data-pipeline='{id}']");
    wait_for("the parked pipeline's row", || async {
        match text(browser, &row).await {
            Some(t)
                if t.contains("probe-gate") && t.contains("parked") && t.contains("approve") =>
            {
                Ok(())
            }
            other => Err(format!("row = {other:?}")),
        }
    })
    .await;
    browser
        .find(Locator::Css(&format!("{row} button")))
        .await?
        .click()
        .await?;
    wait_for("the stage timeline", || async {
        match text(browser, "#pipeline-stages tbody").await {
            Some(t) if t.contains("approve") && t.contains("waiting") && t.contains("after") => {
                Ok(())
            }
            other => Err(format!("stages = {other:?}")),
        }
    })
    .await;
    browser
        .find(Locator::Css(&format!("{row} button.approve")))
        .await?
        .click()
        .await?;
    wait_for("the pipeline to leave the parked list", || async {
        match text(browser, "#pipeline-counts").await {
            Some(t) if t.contains("parked 0") => Ok(()),
            other => Err(format!("counts = {other:?}")),
        }
    })
    .await;
    Ok(())
}

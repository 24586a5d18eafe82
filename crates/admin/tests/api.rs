//! The admin API over real HTTP, on real Redis and PostgreSQL: auth, each
//! endpoint's happy path and its bad-input answers.

use std::{sync::Arc, time::Duration};

use genq_admin_api::{AdminMetrics, AdminState};
use genq_core::{JobStatus, Registry};
use genq_job_probe::ProbeJob;
use genq_redis::{ConsumerOptions, QueueConsumer, RedisConfig, RedisQueue};
use genq_runtime::JobClient;
use genq_store::{NewPurchase, Store, StoreConfig};
use genq_testkit::{TestSchema, cleanup_prefix, redis_url, unique_prefix};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

struct Admin {
    base: String,
    http: reqwest::Client,
    queue: RedisQueue,
    store: Store,
    prefix: String,
    schema: Option<TestSchema>,
}

impl Admin {
    async fn start(test: &str) -> Self {
        let prefix = unique_prefix(test);
        let queue = RedisQueue::connect(RedisConfig::with_url(redis_url()).prefix(&prefix))
            .await
            .unwrap();
        let schema = TestSchema::create(test).await.unwrap();
        let store = Store::open(&StoreConfig::new(&schema.url).schema(&schema.name))
            .await
            .unwrap();
        let mut registry = Registry::new();
        registry.register(ProbeJob::new()).unwrap();
        let prom = prometheus::Registry::new();
        let state = Arc::new(AdminState {
            client: JobClient::new(queue.clone(), Arc::new(registry)),
            queue: queue.clone(),
            store: Some(store.clone()),
            keys: Vec::new(),
            token: Some(TOKEN.to_owned()),
            metrics: AdminMetrics::new(&prom).unwrap(),
            prom,
            webhooks: Vec::new(),
        });
        let (router, _) = genq_admin_api::router(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            queue,
            store,
            prefix,
            schema: Some(schema),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Method::POST, path, body).await
    }

    async fn push(&self, payload: Value) -> String {
        let (status, body) = self
            .post(
                "/api/jobs",
                Some(json!({ "job_type": "probe", "payload": payload })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn stop(mut self) {
        cleanup_prefix(&redis_url(), &self.prefix).await;
        if let Some(s) = self.schema.take() {
            s.drop().await;
        }
    }
}

/// A dead letter made for real: one run of a job that fails with bad input.
async fn make_dead(admin: &Admin) -> String {
    let id = admin
        .push(json!({ "fail": { "class": "bad_input" } }))
        .await;
    let consumer = QueueConsumer::start(
        admin.queue.clone(),
        "default",
        "test-worker",
        ConsumerOptions::default(),
    )
    .await
    .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let c = consumer.clone();
    let monitor = apalis_core::monitor::Monitor::new().register(move |_| {
        apalis_core::worker::builder::WorkerBuilder::new("t")
            .backend(c.backend())
            .build(|_job: genq_redis::RawJob| async {
                Err::<(), _>(genq_core::JobError::bad_input("told to fail"))
            })
    });
    let run = tokio::spawn(monitor.run_with_signal(async move {
        let _ = rx.await;
        Ok(())
    }));
    genq_testkit::wait_until(Duration::from_secs(20), || async {
        (admin.queue.job("default", &id).await.ok()??.status == JobStatus::Failed).then_some(())
    })
    .await
    .expect("job dead-lettered");
    let _ = tx.send(());
    let _ = run.await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_requires_the_token() {
    let admin = Admin::start("auth").await;
    for token in [None, Some("wrong-token-000000000")] {
        let mut req = admin.http.get(format!("{}/api/queues", admin.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("bearer token"));
    }
    assert_eq!(admin.get("/api/queues").await.0, StatusCode::OK);
    // health, readiness, page and OpenAPI need no token
    for path in ["/healthz", "/readyz", "/", "/api/openapi.json"] {
        let res = admin
            .http
            .get(format!("{}{path}", admin.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_jobs_and_their_bad_inputs() {
    let admin = Admin::start("jobs").await;
    let id = admin.push(json!({ "echo": 1 })).await;
    let (_, queues) = admin.get("/api/queues").await;
    let default = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap();
    assert_eq!(default["ready"], 1);

    let (status, page) = admin
        .get("/api/queues/default/jobs?list=ready&limit=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (page["total"].as_u64(), page["jobs"][0]["id"].as_str()),
        (Some(1), Some(id.as_str()))
    );

    let (status, detail) = admin.get(&format!("/api/queues/default/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["job"]["payload"], r#"{"echo":1}"#);
    assert_eq!(detail["timeline"][0]["event"], "enqueued");

    for (path, status, says) in [
        (
            "/api/queues/default/jobs?list=done",
            StatusCode::BAD_REQUEST,
            "unknown list 'done'",
        ),
        (
            "/api/queues/default/jobs?list=ready&limit=0",
            StatusCode::BAD_REQUEST,
            "limit must be 1-500",
        ),
        (
            "/api/queues/default/jobs?list=ready&offset=-1",
            StatusCode::BAD_REQUEST,
            "query string",
        ),
        (
            "/api/queues/nosuch/jobs?list=ready",
            StatusCode::NOT_FOUND,
            "unknown queue 'nosuch'",
        ),
        (
            "/api/queues/Bad%20Q/jobs?list=ready",
            StatusCode::BAD_REQUEST,
            "invalid queue name",
        ),
        (
            "/api/queues/default/jobs/01NOSUCHJOB",
            StatusCode::NOT_FOUND,
            "no job 01NOSUCHJOB",
        ),
        (
            "/api/queues/default/jobs/bad%20id",
            StatusCode::BAD_REQUEST,
            "is not a job id",
        ),
        ("/api/nothing", StatusCode::NOT_FOUND, "no such endpoint"),
    ] {
        let (got, body) = admin.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(says),
            "{path}: {body}"
        );
    }
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_cancel_delete_pause_and_their_bad_inputs() {
    let admin = Admin::start("actions").await;
    let (status, body) = admin
        .post("/api/jobs", Some(json!({ "job_type": "probe", "payload": {}, "delay_ms": 60000, "idempotency_key": "k1" })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, again) = admin
        .post(
            "/api/jobs",
            Some(json!({ "job_type": "probe", "payload": {}, "idempotency_key": "k1" })),
        )
        .await;
    assert_eq!(
        (status, again["id"].as_str(), again["created"].as_bool()),
        (StatusCode::OK, Some(id.as_str()), Some(false))
    );

    for (body, status, says) in [
        (
            json!({ "job_type": "nosuch", "payload": {} }),
            StatusCode::BAD_REQUEST,
            "unknown job type 'nosuch'",
        ),
        (
            json!({ "job_type": "probe", "payload": { "sleep_ms": "x" } }),
            StatusCode::BAD_REQUEST,
            "payload for job type 'probe' is not valid",
        ),
        (
            json!({ "job_type": "probe" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `payload`",
        ),
        (
            json!({ "job_type": "probe", "payload": {}, "colour": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `colour`",
        ),
    ] {
        let (got, answer) = admin.post("/api/jobs", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let huge = "x".repeat(300 * 1024);
    let (got, answer) = admin
        .post(
            "/api/jobs",
            Some(json!({ "job_type": "probe", "payload": { "echo": huge } })),
        )
        .await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["error"].is_string());

    let (status, _) = admin
        .post(&format!("/api/queues/default/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin
        .post(&format!("/api/queues/default/jobs/{id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/api/queues/default/jobs/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin
        .call(
            Method::DELETE,
            &format!("/api/queues/default/jobs/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(
        admin.post("/api/queues/default/pause", None).await.0,
        StatusCode::OK
    );
    assert!(admin.queue.stats("default").await.unwrap().paused);
    assert_eq!(
        admin.post("/api/queues/default/resume", None).await.0,
        StatusCode::OK
    );
    assert!(!admin.queue.stats("default").await.unwrap().paused);
    assert_eq!(
        admin.post("/api/queues/nosuch/pause", None).await.0,
        StatusCode::NOT_FOUND
    );
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_retry_one_and_all() {
    let admin = Admin::start("dead").await;
    let first = make_dead(&admin).await;
    let (status, page) = admin.get("/api/queues/default/dead?limit=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["jobs"][0]["error_class"], "bad_input");
    let (status, _) = admin
        .post(&format!("/api/queues/default/jobs/{first}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        admin
            .queue
            .job("default", &first)
            .await
            .unwrap()
            .unwrap()
            .status,
        JobStatus::Queued
    );
    let (status, body) = admin
        .post(&format!("/api/queues/default/jobs/{first}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // the second worker run also fails the requeued first job again: two dead letters
    let _second = make_dead(&admin).await;
    let (status, body) = admin.post("/api/queues/default/dead/retry", None).await;
    assert_eq!(
        (status, body["requeued"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let (status, body) = admin.get("/api/queues/default/dead?limit=9999").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_keys_user_stats_metrics_and_openapi() {
    let admin = Admin::start("misc").await;
    let _consumer = QueueConsumer::start(
        admin.queue.clone(),
        "default",
        "worker-abc",
        ConsumerOptions {
            concurrency: 7,
            queues: vec!["default".to_owned()],
            host: "host-1".to_owned(),
            pid: 42,
        },
    )
    .await
    .unwrap();
    let (status, workers) = admin.get("/api/workers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(workers["default"][0]["instance"], "worker-abc");
    assert_eq!(workers["default"][0]["concurrency"], 7);

    let (status, keys) = admin.get("/api/keys").await;
    assert_eq!((status, keys), (StatusCode::OK, json!([])));

    let user = admin.store.upsert_user(555, "en").await.unwrap();
    admin.store.grant(user.id, 5, "test").await.unwrap();
    let (status, stats) = admin.get("/api/stats/users?days=7").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(
        (
            stats["users"]["total"].as_i64(),
            stats["users"]["active_1d"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let (status, body) = admin.get("/api/stats/users?days=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = admin.get("/api/stats/users?today=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let text = admin
        .http
        .get(format!("{}/metrics", admin.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"genq_admin_workers_alive{queue="default"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"genq_admin_queue_depth{queue="default",state="ready"} 0"#));
    assert!(text.contains("genq_admin_users_active{window=\"1d\"} 1"));

    let doc: Value = admin
        .http
        .get(format!("{}/api/openapi.json", admin.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/api/queues",
        "/api/queues/{queue}/jobs",
        "/api/queues/{queue}/jobs/{id}",
        "/api/jobs",
        "/api/queues/{queue}/jobs/{id}/retry",
        "/api/queues/{queue}/jobs/{id}/cancel",
        "/api/queues/{queue}/dead",
        "/api/queues/{queue}/dead/retry",
        "/api/queues/{queue}/pause",
        "/api/queues/{queue}/resume",
        "/api/workers",
        "/api/keys",
        "/api/stats/users",
    ] {
        assert!(
            paths.contains(&p),
            "{p} missing from the OpenAPI document: {paths:?}"
        );
    }
    assert!(doc["paths"]["/api/queues/{queue}/jobs/{id}"]["delete"].is_object());
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_grant_deduct_and_ledger_by_telegram_id() {
    let admin = Admin::start("credits").await;
    let (user, _) = admin.store.welcome_user(4242, "en", 30).await.unwrap();

    let (status, body) = admin
        .post(
            "/api/users/4242/credits",
            Some(json!({ "action": "grant", "amount": 100, "reason": "tester" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["balance"].as_i64(),
            body["amount"].as_i64(),
            body["actor"].as_str()
        ),
        (Some(130), Some(100), Some("operator:admin-api"))
    );
    assert_eq!(
        body["message"],
        "granted 100 credits to user 4242; balance 130"
    );
    let (status, body) = admin
        .post(
            "/api/users/4242/credits",
            Some(json!({ "action": "deduct", "amount": 30, "reason": "welcome given twice" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["balance"].as_i64(), body["amount"].as_i64()),
        (Some(100), Some(-30))
    );
    assert_eq!(admin.store.balance(user.id).await.unwrap(), 100);
    assert_eq!(admin.store.ledger_sum(user.id).await.unwrap(), 100);

    let (status, ledger) = admin.get("/api/users/4242/ledger?limit=2").await;
    assert_eq!(status, StatusCode::OK, "{ledger}");
    assert_eq!(
        (ledger["balance"].as_i64(), ledger["user_id"].as_i64()),
        (Some(100), Some(user.id))
    );
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "the limit: {ledger}");
    assert_eq!(
        (
            &entries[0]["kind"],
            &entries[0]["amount"],
            &entries[0]["reason"],
            &entries[0]["actor"]
        ),
        (
            &json!("deduct"),
            &json!(-30),
            &json!("welcome given twice"),
            &json!("operator:admin-api")
        )
    );
    assert_eq!(
        (&entries[1]["kind"], &entries[1]["amount"]),
        (&json!("grant"), &json!(100))
    );
    assert!(entries[0]["created_at"].is_string());
    let (_, all) = admin.get("/api/users/4242/ledger").await;
    assert_eq!(all["entries"].as_array().unwrap().len(), 3, "{all}");
    assert_eq!(all["entries"][2]["reason"], "welcome");
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credit_moves_are_refused_naming_the_problem() {
    let admin = Admin::start("credits_bad").await;
    let (user, _) = admin.store.welcome_user(4343, "ru", 5).await.unwrap();
    let grant = |amount: Value, reason: &str| json!({ "action": "grant", "amount": amount, "reason": reason });

    for (path, body, status, says) in [
        (
            "/api/users/999/credits",
            grant(json!(10), "x"),
            StatusCode::NOT_FOUND,
            "no user with Telegram id 999",
        ),
        (
            "/api/users/abc/credits",
            grant(json!(10), "x"),
            StatusCode::BAD_REQUEST,
            "'abc' is not a Telegram user id",
        ),
        (
            "/api/users/4343/credits",
            grant(json!(0), "x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the amount must be 1 to 1000000 credits, got 0",
        ),
        (
            "/api/users/4343/credits",
            grant(json!(-3), "x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "got -3",
        ),
        (
            "/api/users/4343/credits",
            grant(json!(1_000_001), "x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "got 1000001",
        ),
        (
            "/api/users/4343/credits",
            grant(json!(10), "  "),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a reason of 1 to 500 characters is required",
        ),
        (
            "/api/users/4343/credits",
            grant(json!(10), &"r".repeat(501)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "got 501 characters",
        ),
        (
            "/api/users/4343/credits",
            json!({ "action": "deduct", "amount": 10, "reason": "too much" }),
            StatusCode::CONFLICT,
            "user 4343 has 5 credits; deducting 10 would make it negative",
        ),
        (
            "/api/users/4343/credits",
            json!({ "action": "steal", "amount": 10, "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown variant `steal`",
        ),
        (
            "/api/users/4343/credits",
            json!({ "action": "grant", "amount": 10 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `reason`",
        ),
        (
            "/api/users/4343/credits",
            json!({ "action": "grant", "amount": 1.5, "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "request body",
        ),
    ] {
        let (got, answer) = admin.post(path, Some(body.clone())).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().contains(says),
            "{path} {body}: {answer}"
        );
    }
    for (path, status, says) in [
        (
            "/api/users/999/ledger",
            StatusCode::NOT_FOUND,
            "no user with Telegram id 999",
        ),
        (
            "/api/users/4343/ledger?limit=0",
            StatusCode::BAD_REQUEST,
            "limit must be 1-500, got 0",
        ),
        (
            "/api/users/4343/ledger?limit=501",
            StatusCode::BAD_REQUEST,
            "limit must be 1-500",
        ),
        (
            "/api/users/4343/ledger?limit=x",
            StatusCode::BAD_REQUEST,
            "query string",
        ),
        (
            "/api/users/x1/ledger",
            StatusCode::BAD_REQUEST,
            "not a Telegram user id",
        ),
    ] {
        let (got, answer) = admin.get(path).await;
        assert_eq!(got, status, "{path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().contains(says),
            "{path}: {answer}"
        );
    }
    // nothing refused was written; the token is required here too
    assert_eq!(admin.store.balance(user.id).await.unwrap(), 5);
    assert_eq!(admin.store.ledger_of(user.id, 10).await.unwrap().len(), 1);
    let res = admin
        .http
        .post(format!("{}/api/users/4343/credits", admin.base))
        .json(&grant(json!(10), "no token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(admin.store.balance(user.id).await.unwrap(), 5);

    let doc: Value = admin
        .http
        .get(format!("{}/api/openapi.json", admin.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/users/{telegram_id}/credits"]["post"].is_object());
    assert!(doc["paths"]["/api/users/{telegram_id}/ledger"]["get"].is_object());
    assert!(doc["paths"]["/api/users/{telegram_id}/payments"]["get"].is_object());
    assert!(doc["paths"]["/api/payments/{id}/refund"]["post"].is_object());
    admin.stop().await;
}

fn purchase(telegram_id: i64, charge: &str, credits: i64) -> NewPurchase {
    NewPurchase {
        telegram_id,
        telegram_payment_charge_id: charge.to_owned(),
        provider_payment_charge_id: None,
        package: "p100".to_owned(),
        currency: "XTR".to_owned(),
        stars: 50,
        credits,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_listed_and_refunded_once_never_below_zero() {
    let admin = Admin::start("refunds").await;
    let (user, _) = admin.store.welcome_user(4444, "en", 0).await.unwrap();
    let first = admin
        .store
        .record_purchase(&purchase(4444, "charge-1", 100))
        .await
        .unwrap();
    let second = admin
        .store
        .record_purchase(&purchase(4444, "charge-2", 100))
        .await
        .unwrap();
    assert_eq!(second.balance, 200);

    let (status, list) = admin.get("/api/users/4444/payments").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let payments = list["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 2, "{list}");
    assert_eq!(
        payments[0]["id"].as_i64(),
        Some(second.payment_id),
        "newest first"
    );
    assert_eq!(payments[1]["telegram_payment_charge_id"], "charge-1");
    assert!(payments[1]["refund_status"].is_null());

    let path = format!("/api/payments/{}/refund", first.payment_id);
    let (status, body) = admin
        .post(&path, Some(json!({ "reason": "asked for it back" })))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["credits"].as_i64(),
            body["balance"].as_i64(),
            body["refund_status"].as_str()
        ),
        (Some(100), Some(100), Some("requested"))
    );
    // once: the second request is a conflict and takes nothing
    let (status, body) = admin.post(&path, Some(json!({ "reason": "again" }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("refunded before"),
        "{body}"
    );
    assert_eq!(admin.store.balance(user.id).await.unwrap(), 100);

    // the rest spent: refunding the second purchase would go below zero
    admin
        .store
        .deduct_credits(4444, 60, "spent", "operator:test")
        .await
        .unwrap();
    let (status, body) = admin
        .post(
            &format!("/api/payments/{}/refund", second.payment_id),
            Some(json!({ "reason": "too late" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("negative"),
        "{body}"
    );

    for (path, body, status, says) in [
        (
            "/api/payments/999999/refund".to_owned(),
            json!({ "reason": "x" }),
            StatusCode::NOT_FOUND,
            "no payment 999999",
        ),
        (
            "/api/payments/abc/refund".to_owned(),
            json!({ "reason": "x" }),
            StatusCode::BAD_REQUEST,
            "not a payment id",
        ),
        (
            format!("/api/payments/{}/refund", second.payment_id),
            json!({ "reason": " " }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a reason of 1 to 500 characters",
        ),
        (
            format!("/api/payments/{}/refund", second.payment_id),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `reason`",
        ),
    ] {
        let (got, answer) = admin.post(&path, Some(body.clone())).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().contains(says),
            "{path}: {answer}"
        );
    }
    for (path, status) in [
        ("/api/users/1/payments", StatusCode::NOT_FOUND),
        ("/api/users/4444/payments?limit=0", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(admin.get(path).await.0, status, "{path}");
    }

    // one purchase_refund entry; balance still the ledger's sum
    let ledger = admin.store.ledger_of(user.id, 10).await.unwrap();
    let refunds: Vec<_> = ledger
        .iter()
        .filter(|e| e.kind == genq_store::LedgerKind::PurchaseRefund)
        .collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (
            refunds[0].amount,
            refunds[0].actor.as_deref(),
            refunds[0].payment_id
        ),
        (-100, Some("operator:admin-api"), Some(first.payment_id))
    );
    assert_eq!(admin.store.balance(user.id).await.unwrap(), 40);
    assert_eq!(admin.store.ledger_sum(user.id).await.unwrap(), 40);
    let (_, list) = admin.get("/api/users/4444/payments").await;
    assert_eq!(list["payments"][1]["refund_status"], "requested");
    assert_eq!(list["payments"][1]["refund_reason"], "asked for it back");
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_listed_shown_signalled_and_cancelled() {
    let admin = Admin::start("admin_pipelines").await;
    let mut registry = Registry::new();
    registry.register(ProbeJob::new()).unwrap();
    let driver = genq_pipeline::PipelineDriver::new(
        admin.queue.clone(),
        genq_catalog::pipelines().unwrap(),
        Arc::new(registry),
        vec!["default".to_owned()],
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(driver.run(stop.clone()));
    let client = genq_pipeline::PipelineClient::new(admin.queue.clone());
    let a = client.start("probe-gate", &json!({})).await.unwrap();
    let b = client.start("probe-gate", &json!({})).await.unwrap();
    let parked = genq_testkit::wait_until(Duration::from_secs(20), || async {
        let (_, body) = admin.get("/api/pipelines").await;
        (body["counts"]["parked"] == json!(2)).then_some(body)
    })
    .await;
    assert!(parked.is_some(), "both parked");

    let (status, body) = admin.get("/api/pipelines?state=parked&limit=10").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["pipelines"].as_array().unwrap().len(), 2);
    assert_eq!(body["pipelines"][0]["gate"], json!("approve"));
    let (status, body) = admin.get("/api/pipelines?state=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("sleeping"),
        "{body}"
    );

    let (status, body) = admin.get(&format!("/api/pipelines/{a}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = &body["pipeline"];
    assert_eq!(p["gate"]["name"], json!("approve"));
    assert_eq!(p["stages"][0]["state"], json!("waiting"));
    assert!(p["gate"]["deadline_ms"].as_u64().unwrap() > p["gate"]["opened_ms"].as_u64().unwrap());
    let (status, _) = admin.get("/api/pipelines/no-such-pipeline").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let signal =
        |gate: &str, choice: &str| json!({"gate": gate, "choice": choice, "body": {"by": "admin"}});
    let (status, body) = admin
        .post(
            &format!("/api/pipelines/{a}/signal"),
            Some(signal("approve", "maybe")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("approve,cancel"));
    let (status, _) = admin
        .post(
            &format!("/api/pipelines/{a}/signal"),
            Some(signal("nope", "approve")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = admin
        .post(
            &format!("/api/pipelines/{a}/signal"),
            Some(signal("approve", "approve")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], json!(true));
    let (status, body) = admin
        .post(
            &format!("/api/pipelines/{a}/signal"),
            Some(signal("approve", "approve")),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a second answer changes nothing: {body}"
    );
    assert!(body["error"].as_str().unwrap().contains("already answered"));
    let (status, _) = admin
        .post(
            "/api/pipelines/nope/signal",
            Some(signal("approve", "approve")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = admin
        .post(
            &format!("/api/pipelines/{b}/signal"),
            Some(json!({"gate": "approve"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a missing choice is named: {body}"
    );

    let (status, body) = admin
        .post(&format!("/api/pipelines/{b}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = admin
        .post(&format!("/api/pipelines/{b}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let metrics = admin
        .http
        .get(format!("{}/metrics", admin.base))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("genq_admin_pipelines{state=\"parked\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("genq_admin_pipelines_finished{outcome=\"cancelled\",type=\"probe-gate\"} 1"),
        "{text}"
    );
    stop.cancel();
    admin.stop().await;
}

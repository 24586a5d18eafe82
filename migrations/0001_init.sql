-- genq's PostgreSQL schema: users and their credits, the credit ledger, job history
-- with the outbox that feeds Redis, personas, dialogs, daily activity.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    telegram_id   BIGINT      NOT NULL UNIQUE,
    language      TEXT        NOT NULL DEFAULT 'en',
    credits       BIGINT      NOT NULL DEFAULT 0 CHECK (credits >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per job a user asked for; `id` is also the job's id in Redis.
CREATE TABLE jobs (
    id                TEXT        PRIMARY KEY,
    user_id           BIGINT      NOT NULL REFERENCES users (id),
    job_type          TEXT        NOT NULL,
    queue             TEXT        NOT NULL,
    payload           JSONB       NOT NULL,
    status            TEXT        NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'awaiting_approval')),
    attempts          INTEGER     NOT NULL DEFAULT 0,
    idempotency_key   TEXT,
    price             BIGINT      NOT NULL DEFAULT 0 CHECK (price >= 0),
    provider_task_id  TEXT,
    error_class       TEXT,
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    pushed_at         TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX jobs_created_at ON jobs (created_at);
CREATE INDEX jobs_open ON jobs (created_at) WHERE status IN ('queued', 'running');

-- Append-only. Charges are negative, grants and refunds positive; the balance in
-- `users.credits` always equals the sum of the user's entries.
CREATE TABLE credit_ledger (
    id          BIGSERIAL   PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id),
    job_id      TEXT        REFERENCES jobs (id),
    kind        TEXT        NOT NULL CHECK (kind IN ('grant', 'charge', 'refund')),
    amount      BIGINT      NOT NULL,
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (kind = 'grant' OR job_id IS NOT NULL),
    CHECK ((kind = 'charge' AND amount <= 0) OR (kind <> 'charge' AND amount >= 0))
);
CREATE INDEX credit_ledger_user ON credit_ledger (user_id);
-- A job is charged at most once and refunded at most once, whatever runs twice.
CREATE UNIQUE INDEX credit_ledger_one_charge_per_job ON credit_ledger (job_id) WHERE kind = 'charge';
CREATE UNIQUE INDEX credit_ledger_one_refund_per_job ON credit_ledger (job_id) WHERE kind = 'refund';

-- Jobs committed but not yet pushed to Redis. The relay deletes an entry in the
-- same transaction that records the push.
CREATE TABLE outbox (
    job_id      TEXT        PRIMARY KEY REFERENCES jobs (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- How far the settler has read each queue's completion event stream.
CREATE TABLE event_checkpoints (
    queue          TEXT PRIMARY KEY,
    last_event_id  TEXT NOT NULL
);

CREATE TABLE personas (
    id             BIGSERIAL   PRIMARY KEY,
    name           TEXT        NOT NULL UNIQUE,
    system_prompt  TEXT        NOT NULL,
    greeting       TEXT        NOT NULL,
    fixed_look     TEXT        NOT NULL DEFAULT '',
    avatar_url     TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE dialogs (
    id          BIGSERIAL   PRIMARY KEY,
    user_id     BIGINT      NOT NULL REFERENCES users (id),
    persona_id  BIGINT      NOT NULL REFERENCES personas (id),
    is_active   BOOLEAN     NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX dialogs_one_active_per_user ON dialogs (user_id) WHERE is_active;

CREATE TABLE messages (
    id          BIGSERIAL   PRIMARY KEY,
    dialog_id   BIGINT      NOT NULL REFERENCES dialogs (id),
    role        TEXT        NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content     TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_by_dialog ON messages (dialog_id, id DESC);

-- One row per user and day they did anything: active users and retention.
CREATE TABLE user_activity (
    user_id  BIGINT NOT NULL REFERENCES users (id),
    day      DATE   NOT NULL,
    events   INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX user_activity_day ON user_activity (day);

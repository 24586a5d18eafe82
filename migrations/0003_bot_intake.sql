-- The bot's durable intake and its record of what reached the chat.
--
-- `bot_updates`: every Telegram update, recorded before it is confirmed to Telegram
-- (the next getUpdates offset, or the webhook's 200). The replica that records it
-- handles it under a lease; a lease that runs out (its bot died) lets any replica
-- claim it again. `handled_at` set: done, never handled again. Times are the
-- database's (now()), one clock for every replica.
CREATE TABLE bot_updates (
    update_id   BIGINT PRIMARY KEY,
    body        JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_by  TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    attempts    INT NOT NULL DEFAULT 1,
    handled_at  TIMESTAMPTZ,
    outcome     TEXT
);
CREATE INDEX bot_updates_open ON bot_updates (lease_until) WHERE handled_at IS NULL;

-- One row per one-off side effect of a tracked job (`sent`: its result or failure
-- message reached the chat; `stored`: the exchange went into the dialog). Written
-- after the Telegram call succeeded; read before a retried delivery sends again.
CREATE TABLE bot_deliveries (
    job_id  TEXT NOT NULL,
    what    TEXT NOT NULL,
    done_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, what)
);

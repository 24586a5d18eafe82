-- Reconciling PostgreSQL (the record) with Redis (the fast path) after Redis lost
-- data: a restart without persistence, a failover that dropped writes, a FLUSHALL.
--
-- `jobs.redis_missing_since`: when a settler first found this open, pushed job
-- unknown to Redis. A job still missing one reconcile interval later is put back on
-- its queue from its stored payload, with the same id (or failed and refunded when
-- its type or queue is no longer served); `requeued` counts how often.
ALTER TABLE jobs ADD COLUMN redis_missing_since TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN requeued INT NOT NULL DEFAULT 0;
CREATE INDEX jobs_open_pushed ON jobs (pushed_at, id)
    WHERE status IN ('queued', 'running') AND pushed_at IS NOT NULL;

-- The bot's record of a tracked job (what Redis keeps under `<p>:bot:job:<id>`,
-- and the status message's id), so that tracking survives Redis losing data: the
-- sweep restores it, the status message still ends, the result still goes to the
-- right dialog. Purged with the intake's old updates.
CREATE TABLE bot_tracked (
    job_id     TEXT PRIMARY KEY,
    record     JSONB NOT NULL,
    status_msg INT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bot_tracked_created ON bot_tracked (created_at);

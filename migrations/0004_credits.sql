-- Credits people buy and operators manage: Telegram Stars payments, operator grants
-- and deductions (audited), refunds of purchases, blocked users.
--
-- Ledger kinds from here on:
--   grant            welcome credits, operator grants (amount >= 0)
--   charge / refund  a job's charge and its refund (job_id set; charge <= 0)
--   purchase         credits bought with Telegram Stars (payment_id set, >= 0),
--                    one per payment
--   deduct           an operator takes credits away (<= 0)
--   purchase_refund  a refunded purchase's credits taken back (payment_id set, <= 0),
--                    one per payment
-- `actor` says who moved the credits (`bot`, `operator:<name>`, `telegram`);
-- `reason` why. The balance in `users.credits` still equals the sum of a user's
-- entries, and never goes below zero.

ALTER TABLE users ADD COLUMN blocked BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE payments (
    id                          BIGSERIAL   PRIMARY KEY,
    user_id                     BIGINT      NOT NULL REFERENCES users (id),
    -- Telegram's proof of payment: granted once per id, whoever sees it.
    telegram_payment_charge_id  TEXT        NOT NULL UNIQUE,
    provider_payment_charge_id  TEXT,
    package                     TEXT        NOT NULL,
    currency                    TEXT        NOT NULL DEFAULT 'XTR',
    stars                       BIGINT      NOT NULL CHECK (stars > 0),
    credits                     BIGINT      NOT NULL CHECK (credits > 0),
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An operator's refund: requested (credits taken back in the same transaction),
    -- then done once Telegram refunded the Stars, or failed (credits given back).
    refund_status               TEXT        CHECK (refund_status IN ('requested', 'done', 'failed')),
    refund_requested_at         TIMESTAMPTZ,
    refund_actor                TEXT,
    refund_reason               TEXT,
    refund_error                TEXT,
    refunded_at                 TIMESTAMPTZ,
    -- Telegram's `refunded_payment` seen (a refund made outside genq, or ours confirmed).
    telegram_refunded_at        TIMESTAMPTZ
);
CREATE INDEX payments_user ON payments (user_id, created_at);
CREATE INDEX payments_refund_requested ON payments (refund_requested_at) WHERE refund_status = 'requested';

ALTER TABLE credit_ledger ADD COLUMN actor TEXT;
ALTER TABLE credit_ledger ADD COLUMN payment_id BIGINT REFERENCES payments (id);

-- Replace the kind and sign checks of 0001 with ones that know the new kinds.
DO $$
DECLARE c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'credit_ledger'::regclass AND contype = 'c'
    LOOP
        EXECUTE format('ALTER TABLE credit_ledger DROP CONSTRAINT %I', c.conname);
    END LOOP;
END $$;

ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind CHECK (
    kind IN ('grant', 'charge', 'refund', 'purchase', 'deduct', 'purchase_refund')
);
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_job_kinds CHECK (
    kind NOT IN ('charge', 'refund') OR job_id IS NOT NULL
);
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_payment_kinds CHECK (
    kind NOT IN ('purchase', 'purchase_refund') OR payment_id IS NOT NULL
);
ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_sign CHECK (
    (kind IN ('charge', 'deduct', 'purchase_refund') AND amount <= 0)
    OR (kind NOT IN ('charge', 'deduct', 'purchase_refund') AND amount >= 0)
);
CREATE UNIQUE INDEX credit_ledger_one_purchase_per_payment
    ON credit_ledger (payment_id) WHERE kind = 'purchase';
CREATE UNIQUE INDEX credit_ledger_one_refund_per_payment
    ON credit_ledger (payment_id) WHERE kind = 'purchase_refund';
CREATE INDEX credit_ledger_user_time ON credit_ledger (user_id, created_at);

-- Payments with their user's Telegram id, as operators and the bot read them.
CREATE VIEW payment_view AS
    SELECT p.*, u.telegram_id FROM payments p JOIN users u ON u.id = p.user_id;

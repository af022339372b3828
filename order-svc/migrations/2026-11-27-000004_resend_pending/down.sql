CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    traceparent TEXT
);
DROP INDEX checkouts_resend_due;
ALTER TABLE checkouts DROP COLUMN resends;
ALTER TABLE checkouts DROP COLUMN resend_at;

ALTER TABLE sagas DROP COLUMN traceparent;
ALTER TABLE outbox DROP COLUMN traceparent;

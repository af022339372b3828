-- The trace context a message is published with, and the one a saga's retries continue.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
ALTER TABLE sagas ADD COLUMN traceparent TEXT;

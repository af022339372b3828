-- The audit log: one row per operator action (retry, abort, bulk actions, dead-letter replays and discards), who
-- did it with which credential, on which sagas, with what the action was given and what came of it.
CREATE TABLE operator_actions (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor TEXT NOT NULL,
    credential TEXT NOT NULL,
    action TEXT NOT NULL,
    saga_ids UUID[] NOT NULL DEFAULT '{}',
    details JSONB NOT NULL DEFAULT '{}',
    result JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_actions_at ON operator_actions (at DESC, id DESC);
CREATE INDEX operator_actions_sagas ON operator_actions USING GIN (saga_ids);

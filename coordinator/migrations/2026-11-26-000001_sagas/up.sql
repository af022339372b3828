-- One row per checkout saga. `state` is the serialised domain::SagaState; `status` repeats its tag for filtering.
CREATE TABLE sagas (
    id UUID PRIMARY KEY,
    order_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    request JSONB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('executing', 'compensating', 'completed', 'failed')),
    state JSONB NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    retries INTEGER NOT NULL DEFAULT 0,
    next_retry_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sagas_retry_due ON sagas (next_retry_at) WHERE next_retry_at IS NOT NULL;
CREATE INDEX sagas_status ON sagas (status, updated_at);
CREATE INDEX sagas_order ON sagas (order_id);
CREATE INDEX sagas_user ON sagas (user_id);

-- Every transition, for operators: what happened, from which status to which, and what it sent.
CREATE TABLE saga_transitions (
    id BIGSERIAL PRIMARY KEY,
    saga_id UUID NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    event JSONB NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    state JSONB NOT NULL,
    commands JSONB NOT NULL
);
CREATE INDEX saga_transitions_saga ON saga_transitions (saga_id, id);

CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

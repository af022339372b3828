-- The inbox of the saga worker: what stock-svc decided for each checkout saga, so that a redelivered command gets
-- the same answer and changes nothing, and a release that arrives before its reserve blocks that reserve.
CREATE TABLE saga_steps (
    saga_id UUID PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'rejected', 'released', 'cancelled')),
    items JSONB NOT NULL,
    reason JSONB,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

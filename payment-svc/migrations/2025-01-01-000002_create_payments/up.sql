-- Every payment made against an order, through REST (key `http:<user_id>:<order_id>`) or by the checkout saga
-- (key `saga:<saga_id>`). For the saga the row is also the worker's inbox: a redelivered command finds it and
-- repeats the recorded answer, and a refund that arrives before its charge leaves a `cancelled` tombstone here.
CREATE TABLE payments (
    key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL CHECK (state IN ('charged', 'refunded', 'rejected', 'cancelled')),
    reason JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- `/payment/status` and `/payment/cancel` look payments up by user and order.
CREATE INDEX payments_user_order ON payments (user_id, order_id);

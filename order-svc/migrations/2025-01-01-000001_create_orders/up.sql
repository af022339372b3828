-- An order: who buys, whether it is paid, and what it costs in total (the sum of its lines' totals).
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    paid BOOLEAN NOT NULL DEFAULT false,
    total BIGINT NOT NULL CHECK (total >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The lines of an order, one per item. unit_total is what adding the line's units cost at the prices of the
-- time, so that removing the line takes exactly that off the order's total even if the price changed since.
CREATE TABLE order_items (
    order_id TEXT REFERENCES orders ON DELETE CASCADE,
    item_id TEXT,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_total BIGINT NOT NULL CHECK (unit_total >= 0),
    PRIMARY KEY (order_id, item_id)
);

-- Every checkout attempt of an order, one saga each, and how it ended.
CREATE TABLE checkouts (
    saga_id UUID PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('pending', 'paid', 'failed')),
    reason JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);

-- At most one saga in flight per order: concurrent checkouts of one order join it instead of starting another.
CREATE UNIQUE INDEX checkouts_one_pending_per_order ON checkouts (order_id) WHERE state = 'pending';
-- Finding an order's past checkouts (and cascading deletes) without a scan.
CREATE INDEX checkouts_by_order ON checkouts (order_id);

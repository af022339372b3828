-- A pending checkout is its own outbox: its StartCheckout is published after the commit and sent again from the
-- checkout's row while no outcome has come back, at `resend_at`, `resends` times so far. Checkouts pending now may
-- have had their message in the dropped outbox, so they are due at once.
ALTER TABLE checkouts ADD COLUMN resend_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE checkouts ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
CREATE INDEX checkouts_resend_due ON checkouts (resend_at) WHERE state = 'pending';
DROP TABLE outbox;

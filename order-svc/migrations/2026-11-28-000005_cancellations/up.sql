-- A paid checkout can be cancelled: its saga is undone by the coordinator while the checkout is 'cancelling'
-- (the order still paid, frozen), and ends 'cancelled' (the order unpaid), or back at 'paid' with the problem in
-- reason when it cannot be undone. A saga that can neither complete nor be undone ends 'needs_attention', with
-- the problem in reason; the order stays unpaid.
ALTER TABLE checkouts DROP CONSTRAINT checkouts_state_check;
ALTER TABLE checkouts ADD CONSTRAINT checkouts_state_check
    CHECK (state IN ('pending', 'paid', 'failed', 'cancelling', 'cancelled', 'needs_attention'));

-- At most one saga in flight per order, checking out or cancelling: concurrent checkouts of one order join the
-- pending one, concurrent cancels the cancelling one, and neither starts while the other runs. This keeps the
-- one-pending-per-order rule it replaces.
CREATE UNIQUE INDEX checkouts_one_in_flight_per_order ON checkouts (order_id) WHERE state IN ('pending', 'cancelling');
DROP INDEX checkouts_one_pending_per_order;

-- A cancellation's CancelCheckout is sent again from its row like a pending checkout's StartCheckout.
DROP INDEX checkouts_resend_due;
CREATE INDEX checkouts_resend_due ON checkouts (resend_at) WHERE state IN ('pending', 'cancelling');

-- The older schema knows no cancellations: a cancellation in flight is forgotten (the order stays paid), a
-- cancelled checkout and one needing attention are recorded as failed ones, aborted.
UPDATE checkouts SET state = 'paid', reason = NULL WHERE state = 'cancelling';
UPDATE checkouts SET reason = NULL WHERE state = 'paid';
UPDATE checkouts SET state = 'failed', reason = '{"kind": "aborted"}' WHERE state IN ('cancelled', 'needs_attention');

DROP INDEX checkouts_resend_due;
CREATE INDEX checkouts_resend_due ON checkouts (resend_at) WHERE state = 'pending';

CREATE UNIQUE INDEX checkouts_one_pending_per_order ON checkouts (order_id) WHERE state = 'pending';
DROP INDEX checkouts_one_in_flight_per_order;

ALTER TABLE checkouts DROP CONSTRAINT checkouts_state_check;
ALTER TABLE checkouts ADD CONSTRAINT checkouts_state_check CHECK (state IN ('pending', 'paid', 'failed'));

-- A checkout's resend_at is when its message to the coordinator goes out again: set while it is in flight
-- (pending or cancelling), NULL once it has settled. The index of due checkouts now says "has a resend time"
-- instead of repeating the in-flight states: with the states in its predicate, it was also an index of every
-- checkout in flight, and PostgreSQL could answer "this order's checkout in flight" by scanning all of it, with
-- the entry each settled checkout leaves there until a VACUUM (a plan it would keep, once made on a small table).
ALTER TABLE checkouts ALTER COLUMN resend_at DROP DEFAULT, ALTER COLUMN resend_at DROP NOT NULL;
UPDATE checkouts SET resend_at = NULL WHERE state NOT IN ('pending', 'cancelling');
ALTER TABLE checkouts ADD CONSTRAINT checkouts_resend_at_only_in_flight
    CHECK ((resend_at IS NOT NULL) = (state IN ('pending', 'cancelling')));
DROP INDEX checkouts_resend_due;
CREATE INDEX checkouts_resend_due ON checkouts (resend_at) WHERE resend_at IS NOT NULL;

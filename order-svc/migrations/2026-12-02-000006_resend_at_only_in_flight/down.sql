DROP INDEX checkouts_resend_due;
ALTER TABLE checkouts DROP CONSTRAINT checkouts_resend_at_only_in_flight;
UPDATE checkouts SET resend_at = coalesce(finished_at, created_at) WHERE resend_at IS NULL;
ALTER TABLE checkouts ALTER COLUMN resend_at SET NOT NULL, ALTER COLUMN resend_at SET DEFAULT now();
CREATE INDEX checkouts_resend_due ON checkouts (resend_at) WHERE state IN ('pending', 'cancelling');

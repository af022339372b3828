-- Why a saga fails (or failed), as the kind of its domain::FailureReason: where the state keeps it while it
-- compensates or has failed (`reason`), or, for a saga that needs attention, in what its compensation is for
-- (`goal.reason`). Generated, so that no writer can forget it, and indexed for the operators' filter by reason.
ALTER TABLE sagas ADD COLUMN reason TEXT
    GENERATED ALWAYS AS (COALESCE(state -> 'reason' ->> 'kind', state -> 'goal' -> 'reason' ->> 'kind')) STORED;
CREATE INDEX sagas_reason ON sagas (reason, created_at) WHERE reason IS NOT NULL;
-- The operators' lists page through sagas newest first; created_at never changes, so this index costs the
-- saga loop one entry per new saga and nothing per transition.
CREATE INDEX sagas_created ON sagas (created_at);

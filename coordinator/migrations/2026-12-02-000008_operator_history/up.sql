-- Who caused a history line when an operator did (an `audit::Actor`: name and credential); NULL for what the
-- saga's participants and the retry timer caused, so that a saga's history tells an operator's retry from the
-- timer's.
ALTER TABLE saga_transitions ADD COLUMN actor JSONB;

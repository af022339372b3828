ALTER TABLE saga_transitions DROP COLUMN actor;

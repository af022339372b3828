-- History rows are written in the transaction that changes their saga, and sagas are never deleted, so the
-- foreign key guarded nothing; its check cost a lock on the saga row per history row, the largest part of
-- recording a transition.
ALTER TABLE saga_transitions DROP CONSTRAINT saga_transitions_saga_id_fkey;

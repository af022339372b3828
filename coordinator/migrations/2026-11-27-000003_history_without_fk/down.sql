ALTER TABLE saga_transitions ADD CONSTRAINT saga_transitions_saga_id_fkey
    FOREIGN KEY (saga_id) REFERENCES sagas (id) ON DELETE CASCADE;

DROP TABLE outbox;
DROP TABLE saga_transitions;
DROP TABLE sagas;

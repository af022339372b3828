DROP INDEX sagas_created;
DROP INDEX sagas_reason;
ALTER TABLE sagas DROP COLUMN reason;

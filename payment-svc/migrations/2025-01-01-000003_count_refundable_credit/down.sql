ALTER TABLE users DROP COLUMN refundable;

ALTER TABLE items DROP COLUMN reserved;

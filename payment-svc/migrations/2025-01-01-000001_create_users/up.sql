-- Each user's credit. The CHECK is the last line of defence: no code path may take credit below zero.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    credit BIGINT NOT NULL CHECK (credit >= 0)
);

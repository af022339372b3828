-- Commands are published after the commit and sent again from the saga's state when lost (the retry timer, and
-- order-svc asking again for an outcome), so no message is kept in a table. Rows still here from before were
-- derived from sagas whose state brings them back the same way.
DROP TABLE outbox;

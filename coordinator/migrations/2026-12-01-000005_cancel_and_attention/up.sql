-- A paid checkout can be cancelled (cancelling, cancelled), and a saga whose compensation can never be applied
-- or goes unanswered past its deadline ends needing an operator (needs_attention).
ALTER TABLE sagas DROP CONSTRAINT sagas_status_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_status_check
    CHECK (status IN ('executing', 'compensating', 'completed', 'failed', 'cancelling', 'cancelled', 'needs_attention'));

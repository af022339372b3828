-- What every item has reserved for checkout sagas and not released: the room its stock must leave, so that giving
-- any reservation back fits (stock + reserved never exceeds the maximum of a BIGINT). Kept by the saga worker in
-- the statements that move stock; here counted once from the reservations recorded so far.
ALTER TABLE items ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0);

UPDATE items SET reserved = held.quantity
FROM (
    SELECT line ->> 'item_id' AS item_id,
           LEAST(sum((line ->> 'quantity')::bigint), 9223372036854775807)::bigint AS quantity
    FROM saga_steps, jsonb_array_elements(saga_steps.items) AS line
    WHERE saga_steps.state = 'reserved'
    GROUP BY line ->> 'item_id'
) AS held
WHERE items.item_id = held.item_id;

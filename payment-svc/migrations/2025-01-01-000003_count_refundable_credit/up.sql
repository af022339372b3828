-- What of every user's money is charged and may still be given back (checkout payments a compensation refunds,
-- payments for an order a cancel refunds): the room their credit must leave, so that every refund fits (credit +
-- refundable never exceeds the maximum of a BIGINT). Kept where payments are charged and refunded; here counted
-- once from the payments charged so far.
ALTER TABLE users ADD COLUMN refundable BIGINT NOT NULL DEFAULT 0 CHECK (refundable >= 0);

UPDATE users SET refundable = charged.amount
FROM (
    SELECT user_id, LEAST(sum(amount), 9223372036854775807)::bigint AS amount
    FROM payments
    WHERE state = 'charged'
    GROUP BY user_id
) AS charged
WHERE users.id = charged.user_id;

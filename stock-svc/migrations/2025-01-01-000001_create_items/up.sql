-- Every item for sale: how many are in stock and what one costs.
CREATE TABLE items (
    item_id TEXT PRIMARY KEY,
    stock BIGINT NOT NULL CHECK (stock >= 0),
    price BIGINT NOT NULL CHECK (price >= 0)
);

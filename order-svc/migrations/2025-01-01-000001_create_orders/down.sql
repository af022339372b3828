DROP TABLE checkouts;
DROP TABLE order_items;
DROP TABLE orders;

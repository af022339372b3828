//! The diesel schema of the tables queried through the query builder (see `migrations/`).

diesel::table! {
    items (item_id) {
        item_id -> Text,
        stock -> BigInt,
        price -> BigInt,
        reserved -> BigInt,
    }
}

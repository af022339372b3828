//! Everything stock-svc keeps in PostgreSQL: the items (see [`items`]) and the saga worker's record of what it
//! decided per saga (see [`saga_steps`]). Each function runs on a connection the caller provides, so that the
//! caller decides what shares one transaction.

pub mod items;
pub mod saga_steps;
mod schema;

/// The migrations that create the tables, embedded in the binary and applied at start.
pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations");

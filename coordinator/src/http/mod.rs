//! The coordinator's HTTP surface: the admin API under `/admin/` for operators.

mod admin;

/// Registers the admin routes.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    admin::configure(cfg);
}

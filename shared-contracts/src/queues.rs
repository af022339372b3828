//! Queue and exchange names. Messages are published to the default exchange with the queue name as routing key;
//! every work queue dead-letters into [`DEAD_LETTER_EXCHANGE`], which routes to [`DEAD_LETTERS`].

/// The coordinator's inbox: checkout requests and every participant reply.
pub const COORDINATOR: &str = "checkout.coordinator";
/// Commands for stock-svc's worker.
pub const STOCK_COMMANDS: &str = "checkout.stock.commands";
/// Commands for payment-svc's worker.
pub const PAYMENT_COMMANDS: &str = "checkout.payment.commands";
/// Saga outcomes for order-svc.
pub const ORDER_OUTCOMES: &str = "checkout.order.outcomes";
/// Where messages that cannot be processed go, once, instead of blocking their queue.
pub const DEAD_LETTERS: &str = "checkout.dead-letters";
/// The fanout exchange in front of [`DEAD_LETTERS`].
pub const DEAD_LETTER_EXCHANGE: &str = "checkout.dlx";

/// Every work queue, for declaring them all at start-up.
pub const WORK_QUEUES: [&str; 4] = [COORDINATOR, STOCK_COMMANDS, PAYMENT_COMMANDS, ORDER_OUTCOMES];

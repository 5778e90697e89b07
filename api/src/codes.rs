//! The JSON-RPC error codes the node answers with: JSON-RPC 2.0's own, then Apiary's
//! (-32000 to -32099, the range the spec leaves to servers).

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// A block or transaction named by the call is not known.
pub const NOT_FOUND: i64 = -32004;
/// The transaction was refused; the message says why.
pub const TX_REJECTED: i64 = -32010;
/// `dev_mine` could not finish.
pub const MINING_FAILED: i64 = -32020;
/// The disk is full: the node takes no blocks or transactions until there is room.
pub const STORAGE_FULL: i64 = -32030;
/// The store is damaged: the node is stopping; see its log for what to do.
pub const STORAGE_DAMAGED: i64 = -32031;
/// No cookie, or the wrong one.
pub const UNAUTHORIZED: i64 = -32001;
/// The call would read more than one call may (the message says what to do instead).
pub const TOO_MUCH_WORK: i64 = -32040;
/// Too many connections at once: try again after `Retry-After` seconds.
pub const SERVER_BUSY: i64 = -32000;

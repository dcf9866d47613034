//! What can go wrong in the event store, typed so callers can tell a lost race (retry
//! or report a conflict) from a broken database.

use schemas::StreamId;

use crate::append::ExpectedVersion;

#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// Another append changed the stream first; the caller's decision was made on stale
    /// state. Nothing was written.
    #[error("stream {stream} is at version {actual}, not at {expected}")]
    Concurrency {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },

    /// An event id was already stored: the caller reused one.
    #[error("event id already stored in stream {stream}")]
    DuplicateEventId { stream: StreamId },

    /// An event of aggregate `aggregate` was offered to a stream of another category.
    #[error("{aggregate} events cannot be appended to stream {stream}")]
    WrongStream {
        stream: StreamId,
        aggregate: &'static str,
    },

    #[error("an append needs at least one event")]
    NothingToAppend,

    /// A stored row does not form a valid envelope (bad metadata, out-of-range numbers).
    #[error("stored event {position} is malformed: {reason}")]
    MalformedRow { position: i64, reason: String },

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

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

    /// An event bigger than the store takes (see [`crate::MAX_EVENT_BYTES`]): it would be
    /// refused downstream (Kafka's record limit, Elasticsearch's), so it is refused here,
    /// before anything is stored.
    #[error("event of {size} bytes exceeds the limit of {max}")]
    EventTooLarge { size: usize, max: usize },

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Whether `error` is the database being saturated or away for a moment (the caller may
/// retry soon), with what to tell the client; `None` for anything else.
pub fn transience(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::PoolTimedOut => Some("the database is busy"),
        sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Some("the database is unavailable for a moment"),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            // 08: connection exceptions; 53: insufficient resources (too many connections,
            // out of memory); 57P0x: the server is shutting down or starting up; 40001 and
            // 40P01: serialization failure and deadlock, which a retry resolves; 55P03: a
            // lock not granted in time.
            let transient = code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || matches!(code.as_ref(), "40001" | "40P01" | "55P03");
            transient.then_some("the database is unavailable for a moment")
        }
        _ => None,
    }
}

impl EventStoreError {
    /// See [`transience`].
    pub fn transience(&self) -> Option<&'static str> {
        match self {
            Self::Database(error) => transience(error),
            _ => None,
        }
    }
}

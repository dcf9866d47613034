//! Password hashing: Argon2id with OWASP's parameters (19 MiB, 2 iterations, 1 lane).
//!
//! Each hash takes tens of milliseconds of CPU and 19 MiB of memory, so hashing runs on a
//! few threads of its own (one per core), never on an async worker, and each thread
//! reuses one block of memory. On the blocking pool, a burst of logins would hash on as
//! many threads as it has requests: 16 at once took the server from 26 MB to 495 MB, and
//! the allocator kept it. Here memory stays at one block per thread whatever comes, and
//! when more wait than the threads can take in a few seconds, the request is answered 503
//! with `Retry-After` instead.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use argon2::password_hash::{self, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::problem::ApiError;

fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("OWASP's Argon2id parameters are valid")
}

/// Hashes `password` (PHC string format, salt included).
pub async fn hash(password: String) -> Result<String, ApiError> {
    workers()
        .run(move |memory| hash_with(memory, password.as_bytes()))
        .await?
        .map_err(ApiError::internal)
}

/// True when `password` matches `hash`. A malformed hash never matches.
pub async fn verify(hash: String, password: String) -> Result<bool, ApiError> {
    workers()
        .run(move |memory| verify_with(memory, &hash, password.as_bytes()))
        .await
}

fn hash_with(memory: &mut [Block], password: &[u8]) -> Result<String, password_hash::Error> {
    let params = params();
    let salt = SaltString::generate(&mut rand_core::OsRng);
    let mut salt_bytes = [0_u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes)?;
    let mut out = [0_u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt_raw, &mut out, memory)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params).try_into()?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(phc.to_string())
}

fn verify_with(memory: &mut [Block], hash: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.hash,
        parsed.salt,
    ) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or_default();
    let mut salt_bytes = [0_u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0_u8; expected.len()];
    // A hash made with other parameters than today's may need more memory than ours.
    let mut larger = Vec::new();
    let blocks = params.block_count();
    let memory = if blocks <= memory.len() {
        &mut memory[..blocks]
    } else {
        larger.resize(blocks, Block::default());
        &mut larger[..]
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt_raw, &mut out, memory)
        .is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// How many hashes may wait for a thread before requests are turned away (about a second
/// and a half of work on two cores).
const QUEUE: usize = 64;

type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

/// The hashing threads and their queue.
struct Workers {
    queue: SyncSender<Job>,
}

fn workers() -> &'static Workers {
    static WORKERS: OnceLock<Workers> = OnceLock::new();
    WORKERS.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        Workers::start(threads, QUEUE)
    })
}

impl Workers {
    fn start(threads: usize, queue: usize) -> Self {
        let (sender, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("password-{index}"))
                .spawn(move || work(&receiver))
                .expect("start a password hashing thread");
        }
        Self { queue: sender }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // Nobody may wait any more (the client went away): the work is simply dropped.
            let _ = reply.send(work(memory));
        });
        self.queue.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => ApiError::Unavailable {
                what: "too many password checks at once",
                retry_after_secs: 1,
            },
            TrySendError::Disconnected(_) => ApiError::internal("the password threads are gone"),
        })?;
        answer.await.map_err(ApiError::internal)
    }
}

/// One hashing thread: its memory allocated once, then jobs until the queue closes.
fn work(receiver: &Mutex<Receiver<Job>>) {
    let mut memory = vec![Block::default(); params().block_count()];
    loop {
        let job = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        match job {
            Ok(job) => job(&mut memory),
            Err(_closed) => return,
        }
    }
}

/// The longest password accepted, in characters.
pub const MAX_CHARS: usize = 128;
/// The shortest.
pub const MIN_CHARS: usize = 12;

/// What a password must be: long enough, and bounded, since hashing a megabyte would be a
/// cheap way to spend the server's CPU.
pub fn check_strength(password: &str) -> Result<(), &'static str> {
    match password.chars().count() {
        0..MIN_CHARS => Err("must be at least 12 characters"),
        129.. => Err("must be at most 128 characters"),
        _ => Ok(()),
    }
}

/// False for a password no account can have (too long to have been accepted), so that
/// a login can refuse it without spending a hash. Short ones are still checked: accounts
/// made before a stricter rule may have them.
pub fn could_match(password: &str) -> bool {
    password.len() <= MAX_CHARS * 4 && password.chars().count() <= MAX_CHARS
}

//! The `tracing` subscriber every binary installs first: the filter from `RUST_LOG`
//! (default `info`), human-readable lines on stderr, or one JSON object per line with
//! `CHRONICLE_LOG_FORMAT=json`. Logs go to stderr so a command's report on stdout
//! (`projector replay --json`) stays machine-readable.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("CHRONICLE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

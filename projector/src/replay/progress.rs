//! Progress of a replay: a bar with events per second and ETA on a terminal; a plain line
//! every few seconds otherwise (CI logs, `nohup`, pipes), where a bar would be noise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise.
    Auto,
    /// Nothing (library callers, tests, benchmarks).
    Quiet,
}

/// Counts events read against an expected total and shows it.
#[derive(Debug, Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    label: String,
    total: u64,
    read: AtomicU64,
    started: Instant,
    display: Display,
}

#[derive(Debug)]
enum Display {
    Bar(ProgressBar),
    Lines {
        every: Duration,
        last: std::sync::Mutex<Instant>,
    },
    Quiet,
}

impl Progress {
    pub fn new(mode: ProgressMode, label: &str, total: u64) -> Self {
        let display = match mode {
            ProgressMode::Quiet => Display::Quiet,
            ProgressMode::Auto if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:40}] {human_pos}/{human_len} events, {per_sec}, ETA {eta}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar.set_message(label.to_owned());
                Display::Bar(bar)
            }
            ProgressMode::Auto => Display::Lines {
                every: Duration::from_secs(5),
                last: std::sync::Mutex::new(Instant::now()),
            },
        };
        Self {
            inner: Arc::new(Inner {
                label: label.to_owned(),
                total,
                read: AtomicU64::new(0),
                started: Instant::now(),
                display,
            }),
        }
    }

    /// `events` more were read.
    pub fn advance(&self, events: u64) {
        let inner = &self.inner;
        let read = inner.read.fetch_add(events, Ordering::Relaxed) + events;
        match &inner.display {
            Display::Bar(bar) => bar.set_position(read),
            Display::Lines { every, last } => {
                let mut last = last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.elapsed() >= *every {
                    *last = Instant::now();
                    eprintln!("{}", inner.line(read));
                }
            }
            Display::Quiet => {}
        }
    }

    /// A phase after reading (swap, catch-up, verification), shown as a message.
    pub fn phase(&self, what: &str) {
        match &self.inner.display {
            Display::Bar(bar) => bar.set_message(format!("{}: {what}", self.inner.label)),
            Display::Lines { .. } => eprintln!("{}: {what}", self.inner.label),
            Display::Quiet => {}
        }
    }

    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.inner.display {
            bar.finish_and_clear();
        }
    }
}

impl Inner {
    fn line(&self, read: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = read as f64 / seconds;
        let percent = if self.total == 0 {
            100.0
        } else {
            read as f64 * 100.0 / self.total as f64
        };
        let eta = if rate > 0.0 && self.total > read {
            format!("{:.0}s", (self.total - read) as f64 / rate)
        } else {
            "-".to_owned()
        };
        format!(
            "{}: {read}/{} events ({percent:.0}%), {rate:.0} events/s, ETA {eta}",
            self.label, self.total
        )
    }
}

//! The one retry loop: bounded by a deadline, sleeping only between attempts, backing off to a
//! ceiling, and reporting the last real answer when time runs out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Ctrl-C (SIGINT): set once, the process is ending.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// SIGTERM (only `watch` asks for it): set once, the process is ending.
static TERMINATED: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
/// The work in progress is called off (`watch`: Docker went away in the middle of a heal);
/// unlike the two above it is reset, by [`resume`], before the next piece of work.
static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C sets a flag: every wait checks it, stops its child, and returns
/// [`Error::Interrupted`] (exit 130). The terminal delivers SIGINT to the children too.
pub fn on_interrupt() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

/// SIGTERM stops the process like Ctrl-C (children stopped and reaped) and [`terminated`] tells
/// it apart: a service manager's stop, not an interruption.
pub fn on_terminate() {
    let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&TERMINATED));
}

/// Every wait gives up: the process is ending, or the work in progress was cancelled.
pub fn interrupted() -> bool {
    stopping() || CANCELLED.load(Ordering::SeqCst)
}

/// The process is ending (SIGINT or SIGTERM).
pub fn stopping() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) || TERMINATED.load(Ordering::SeqCst)
}

/// SIGTERM (rather than Ctrl-C) is why the process is ending.
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst) && !INTERRUPTED.load(Ordering::SeqCst)
}

/// Call off the work in progress: its waits return [`Error::Interrupted`] and its children are
/// stopped (from any thread).
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Before the next piece of work: what [`cancel`] called off stays off, the new work runs.
pub fn resume() {
    CANCELLED.store(false, Ordering::SeqCst);
}

pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// Sleep, waking early on Ctrl-C.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    if interrupted() { Err(Error::Interrupted) } else { Ok(()) }
}

pub enum Attempt<T> {
    Done(T),
    /// Not yet; the text says what the last attempt saw.
    Retry(String),
    /// Give up now: retrying cannot help.
    Fail(Error),
}

/// A deadline fixed when it starts and shared by the waits that make up one task (a connector's
/// registration: the REST API answering, the PUT, RUNNING): each gets only what is left, and a
/// timeout names the whole of it, the one that was printed.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    start: Instant,
    total: Duration,
}

impl Deadline {
    /// A deadline of `total` from now.
    pub fn start(total: Duration) -> Deadline {
        Deadline { start: Instant::now(), total }
    }

    pub fn total(&self) -> Duration {
        self.total
    }

    pub fn left(&self) -> Duration {
        self.total.saturating_sub(self.start.elapsed())
    }

    /// A request's own timeout cut to what is left (never under `floor`, so a last attempt
    /// can still get an answer).
    pub fn cap(&self, timeout: Duration, floor: Duration) -> Duration {
        timeout.min(self.left().max(floor))
    }
}

pub struct Poll<'a> {
    pub what: &'a str,
    pub deadline: Deadline,
    pub first: Duration,
    pub ceiling: Duration,
    pub next: &'a str,
}

impl<'a> Poll<'a> {
    /// A wait with a deadline of its own, from now.
    pub fn new(what: &'a str, deadline: Duration, next: &'a str) -> Poll<'a> {
        Poll::within(what, Deadline::start(deadline), next)
    }

    /// A wait that ends with a deadline already running (it may have little left).
    pub fn within(what: &'a str, deadline: Deadline, next: &'a str) -> Poll<'a> {
        Poll { what, deadline, first: Duration::from_millis(100), ceiling: Duration::from_secs(1), next }
    }

    pub fn run<T>(&self, mut attempt: impl FnMut() -> Attempt<T>) -> Result<T> {
        let mut delay = self.first;
        loop {
            if interrupted() {
                return Err(Error::Interrupted);
            }
            let last = match attempt() {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(err) => return Err(err),
                Attempt::Retry(why) => why,
            };
            let left = self.deadline.left();
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: self.what.to_string(),
                    after: self.deadline.total(),
                    detail: format!("last answer: {last}"),
                    next: self.next.to_string(),
                });
            }
            sleep(delay.min(left))?;
            delay = (delay * 2).min(self.ceiling);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_last_answer_on_timeout() {
        let mut n = 0;
        let err = Poll::new("thing", Duration::from_millis(150), "do x")
            .run::<()>(|| {
                n += 1;
                Attempt::Retry(format!("attempt {n}"))
            })
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("thing") && text.contains(&format!("attempt {n}")) && text.contains("do x"));
        assert_eq!(err.code(), crate::error::code::TIMEOUT);
    }

    #[test]
    fn waits_sharing_a_deadline_end_together_and_name_all_of_it() {
        let deadline = Deadline::start(Duration::from_millis(300));
        Poll::within("first", deadline, "").run::<()>(|| Attempt::Retry("not yet".into())).unwrap_err();
        let mut attempts = 0;
        let err = Poll::within("second", deadline, "")
            .run::<()>(|| {
                attempts += 1;
                Attempt::Retry("still not".into())
            })
            .unwrap_err();
        // Nothing was left for the second wait: one attempt, no retry, the whole deadline named.
        assert_eq!(attempts, 1);
        assert!(err.to_string().contains("timed out after 300ms: second"), "{err}");
        assert_eq!(
            deadline.cap(Duration::from_secs(95), Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn stops_at_the_first_success() {
        let mut n = 0;
        let got = Poll::new("x", Duration::from_secs(5), "").run(|| {
            n += 1;
            if n == 3 { Attempt::Done(n) } else { Attempt::Retry(String::new()) }
        });
        assert_eq!(got.unwrap(), 3);
    }
}

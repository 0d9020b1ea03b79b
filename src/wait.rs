//! The one retry loop: bounded by a deadline, sleeping only between attempts, backing off to a
//! ceiling, and reporting the last real answer when time runs out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C sets a flag: every wait checks it, stops its child, and returns
/// [`Error::Interrupted`] (exit 130). The terminal delivers SIGINT to the children too.
pub fn on_interrupt() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
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

pub struct Poll<'a> {
    pub what: &'a str,
    pub deadline: Duration,
    pub first: Duration,
    pub ceiling: Duration,
    pub next: &'a str,
}

impl<'a> Poll<'a> {
    pub fn new(what: &'a str, deadline: Duration, next: &'a str) -> Poll<'a> {
        Poll { what, deadline, first: Duration::from_millis(100), ceiling: Duration::from_secs(1), next }
    }

    pub fn run<T>(&self, mut attempt: impl FnMut() -> Attempt<T>) -> Result<T> {
        let start = Instant::now();
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
            let left = self.deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: self.what.to_string(),
                    after: self.deadline,
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
    fn stops_at_the_first_success() {
        let mut n = 0;
        let got = Poll::new("x", Duration::from_secs(5), "").run(|| {
            n += 1;
            if n == 3 { Attempt::Done(n) } else { Attempt::Retry(String::new()) }
        });
        assert_eq!(got.unwrap(), 3);
    }
}

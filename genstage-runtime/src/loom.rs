//! The synchronisation the mailbox is built on, through one door, as tokio's `crate::loom` does: std's
//! primitives, or [loom](https://docs.rs/loom)'s when the mailbox's model-checking tests run
//! (`RUSTFLAGS="--cfg loom"`, see `mailbox/loom_tests.rs`). Loom explores every interleaving of the
//! operations it sees, so everything the mailbox's threads meet on goes through here.
//!
//! loom is a dev-dependency, so only the crate's own tests (`cfg(test)`) switch to it: a crate built
//! with `--cfg loom` as a dependency of another keeps std's primitives, as tokio does.

#[cfg(not(all(test, loom)))]
pub(crate) mod sync {
    pub(crate) use std::sync::{atomic, Arc, Mutex, MutexGuard};
}

#[cfg(all(test, loom))]
pub(crate) mod sync {
    pub(crate) use ::loom::sync::{atomic, Arc, Mutex, MutexGuard};
}

/// The time now, to time a receiver's busy spell; `None` under loom, whose models must take the same
/// path each time a schedule is replayed, so the clock must not steer them.
#[inline]
pub(crate) fn spell_clock() -> Option<std::time::Instant> {
    if cfg!(all(test, loom)) {
        None
    } else {
        Some(std::time::Instant::now())
    }
}

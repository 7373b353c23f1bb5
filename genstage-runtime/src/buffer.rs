//! The buffer of a producer or producer_consumer (GenStage's `GenStage.Buffer`).
//!
//! Events that no consumer has demand for wait here, up to `buffer_size`; demand is served from the
//! buffer before the producer is asked for more. When it is full, `buffer_keep` decides whether the
//! oldest or the incoming events are dropped, and the caller logs how many.
//!
//! Info markers are messages that must be delivered after the events buffered before them (GenStage's
//! `sync_info`/`async_info`). They never count towards the size and are never lost: when the events
//! in front of one are dropped, it is released at once.
//!
//! # Allocation
//! Events live in one ring buffer that grows to the largest backlog seen; taking `n` events moves them
//! into one new `Vec`.

use std::collections::VecDeque;

use crate::options::{BufferKeep, ProducerOptions};

/// What storing events did.
#[derive(Debug, PartialEq, Eq)]
pub struct Stored<I> {
    /// Events dropped because the buffer was full.
    pub discarded: usize,
    /// Info markers whose preceding events were all dropped: deliver them now, in this order.
    pub released: Vec<I>,
}

/// What taking events gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken<T, I> {
    /// The events, oldest first.
    pub events: Vec<T>,
    /// Info markers reached right after these events: deliver them after the events, in this order.
    pub infos: Vec<I>,
    /// The part of the request the buffer could not serve.
    pub remaining: usize,
}

/// A FIFO of events with a size limit, plus info markers placed between events.
#[derive(Debug)]
pub struct Buffer<T, I = ()> {
    events: VecDeque<T>,
    /// Sequence number of `events[0]`: how many events have ever left the buffer (taken or dropped).
    head: u64,
    /// Info markers, each with the sequence number of the event it precedes. Sorted by that number,
    /// FIFO among equal ones; every number is greater than `head` (markers at `head` are released).
    infos: VecDeque<(u64, I)>,
    /// `None` is unbounded.
    capacity: Option<usize>,
    keep: BufferKeep,
}

impl<T, I> Buffer<T, I> {
    /// An empty buffer with the given size and keep policy.
    pub fn new(options: ProducerOptions) -> Self {
        Buffer {
            events: VecDeque::new(),
            head: 0,
            infos: VecDeque::new(),
            capacity: options.buffer_size,
            keep: options.buffer_keep,
        }
    }

    /// The number of buffered events (info markers do not count; GenStage's `estimate_size`).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is buffered.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Appends `events`, dropping what does not fit according to `buffer_keep`.
    pub fn store(&mut self, events: Vec<T>) -> Stored<I> {
        let free = self
            .capacity
            .map_or(usize::MAX, |cap| cap.saturating_sub(self.events.len()));
        if events.len() <= free {
            self.events.extend(events);
            return Stored {
                discarded: 0,
                released: Vec::new(),
            };
        }
        match self.keep {
            BufferKeep::First => {
                let discarded = events.len() - free;
                self.events.extend(events.into_iter().take(free));
                Stored {
                    discarded,
                    released: Vec::new(),
                }
            }
            BufferKeep::Last => {
                let discarded = events.len() - free;
                self.events.extend(events);
                self.events.drain(..discarded);
                self.head += discarded as u64;
                Stored {
                    discarded,
                    released: self.release_reached(),
                }
            }
        }
    }

    /// Places `info` after the events buffered now; `Err(info)` when nothing is buffered, meaning
    /// "deliver it now" (GenStage's `store_permanent_unless_empty`).
    ///
    /// # Errors
    ///
    /// Gives `info` back when the buffer holds no event.
    pub fn store_info(&mut self, info: I) -> Result<(), I> {
        if self.events.is_empty() {
            return Err(info);
        }
        self.infos
            .push_back((self.head + self.events.len() as u64, info));
        Ok(())
    }

    /// Takes up to `count` events, stopping early at an info marker, and releases the markers reached.
    pub fn take(&mut self, count: usize) -> Taken<T, I> {
        let until_marker = self
            .infos
            .front()
            .map_or(usize::MAX, |(at, _)| (at - self.head) as usize);
        let n = count.min(self.events.len()).min(until_marker);
        let events: Vec<T> = self.events.drain(..n).collect();
        self.head += n as u64;
        Taken {
            events,
            infos: self.release_reached(),
            remaining: count - n,
        }
    }

    /// Removes every event; returns how many there were. Markers are released.
    pub fn clear(&mut self) -> (usize, Vec<I>) {
        let n = self.events.len();
        self.events.clear();
        self.head += n as u64;
        (n, self.release_reached())
    }

    fn release_reached(&mut self) -> Vec<I> {
        let mut released = Vec::new();
        while self.infos.front().is_some_and(|(at, _)| *at <= self.head) {
            if let Some((_, info)) = self.infos.pop_front() {
                released.push(info);
            }
        }
        released
    }
}

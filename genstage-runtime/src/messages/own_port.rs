//! A stage's port to its own mailbox, which stamps each letter with the generation of the value
//! that sent it: a restarted stage drops what its failed values sent themselves (a timer's info,
//! an `info_after_buffered`), as a GenStage process restarted by its supervisor never gets what the
//! process it replaces sent itself. Letters from outside (calls, casts and infos through a
//! reference) carry no stamp and reach whichever value is there.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::letter::{Emitted, Letter, OpenLetter, Opened, PostLetter};
use crate::stage::StageResult;

/// The port the stage's current value posts through: stamped with the generation at the time.
pub(crate) struct OwnPort {
    port: Box<dyn PostLetter>,
    generation: Arc<AtomicU64>,
}

impl OwnPort {
    /// The port to a stage's own mailbox, for its first value.
    pub(crate) fn new(port: Box<dyn PostLetter>) -> Self {
        OwnPort {
            port,
            generation: Arc::default(),
        }
    }

    /// The stage's value is replaced: what the values before it sent is stale from now on.
    pub(crate) fn next_generation(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `letter` was sent by a value that has since been replaced.
    pub(crate) fn is_stale(&self, letter: &Letter) -> bool {
        !letter.outlives_its_sender()
            && letter
                .generation()
                .is_some_and(|sent_by| sent_by < self.generation.load(Ordering::Relaxed))
    }
}

impl PostLetter for OwnPort {
    fn post(&self, letter: Letter) -> bool {
        let generation = self.generation.load(Ordering::Relaxed);
        self.port.post(stamped(generation, letter))
    }

    fn is_open(&self) -> bool {
        self.port.is_open()
    }

    /// A port for a task of the current value's (a timer): it keeps this value's stamp.
    fn clone_port(&self) -> Box<dyn PostLetter> {
        Box::new(ValuePort {
            port: self.port.clone_port(),
            generation: self.generation.load(Ordering::Relaxed),
        })
    }
}

/// A port that stamps what it posts with one value's generation.
struct ValuePort {
    port: Box<dyn PostLetter>,
    generation: u64,
}

impl PostLetter for ValuePort {
    fn post(&self, letter: Letter) -> bool {
        self.port.post(stamped(self.generation, letter))
    }

    fn is_open(&self) -> bool {
        self.port.is_open()
    }

    fn clone_port(&self) -> Box<dyn PostLetter> {
        Box::new(ValuePort {
            port: self.port.clone_port(),
            generation: self.generation,
        })
    }
}

fn stamped(generation: u64, letter: Letter) -> Letter {
    Box::new(Stamped { generation, letter })
}

/// A letter a stage's value sent its own stage, with that value's generation.
struct Stamped {
    generation: u64,
    letter: Letter,
}

impl OpenLetter for Stamped {
    fn open<'a>(
        self: Box<Self>,
        stage: &'a mut (dyn Any + Send),
        opened: Opened<'a>,
    ) -> Pin<Box<dyn Future<Output = StageResult<Emitted>> + Send + 'a>> {
        self.letter.open(stage, opened)
    }

    fn is_after_buffered(&self) -> bool {
        self.letter.is_after_buffered()
    }

    fn into_after_buffered(self: Box<Self>) -> Result<Letter, Letter> {
        let generation = self.generation;
        self.letter
            .into_after_buffered()
            .map(|letter| stamped(generation, letter))
            .map_err(|letter| stamped(generation, letter))
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation)
    }

    fn outlives_its_sender(&self) -> bool {
        self.letter.outlives_its_sender()
    }
}

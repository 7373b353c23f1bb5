//! A stage task's restarts: how it makes its stage value again, and when it may.

/// A stage's value, and how to make it again for a restart (`None`: it cannot be).
pub(crate) struct Build<S> {
    pub(crate) first: S,
    again: Option<Box<dyn FnMut() -> S + Send>>,
}

impl<S> Build<S> {
    /// A value added as such: it cannot be made again.
    pub(crate) fn once(stage: S) -> Self {
        Build {
            first: stage,
            again: None,
        }
    }

    /// The value `build` makes now, and again for each restart.
    pub(crate) fn by(mut build: impl FnMut() -> S + Send + 'static) -> Self {
        Build {
            first: build(),
            again: Some(Box::new(build)),
        }
    }

    /// Whether it can be made again.
    pub(crate) fn rebuildable(&self) -> bool {
        self.again.is_some()
    }
}

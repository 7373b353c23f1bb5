//! One error accumulator for both macros, in the style of serde's `Ctxt`: each check pushes the
//! errors it finds and goes on, so one build shows every independent mistake; the collected errors
//! then have to be taken out with [`Errors::check`] or [`Errors::into_error`].
//!
//! Dropping an `Errors` that still holds errors is a bug of the macro (a mistake found and then
//! forgotten); the crate's unit tests make it a panic, while a user's build never panics.

/// The errors found so far.
#[derive(Default)]
pub(crate) struct Errors {
    /// Every error pushed, combined into one; taken out by `check` or `into_error`.
    error: Option<syn::Error>,
}

impl Errors {
    /// Adds an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.error {
            Some(existing) => existing.combine(error),
            None => self.error = Some(error),
        }
    }

    /// `Err` with every error pushed, if any.
    pub(crate) fn check(mut self) -> syn::Result<()> {
        self.take()
    }

    /// `Err` with every error pushed so far, if any, leaving the accumulator empty: for a step
    /// whose errors make the next step pointless.
    pub(crate) fn take(&mut self) -> syn::Result<()> {
        match self.error.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The errors pushed, if any.
    pub(crate) fn into_error(mut self) -> Option<syn::Error> {
        self.take().err()
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if cfg!(test) && self.error.is_some() && !std::thread::panicking() {
            panic!("errors were collected and never checked");
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::Span;

    use super::Errors;

    #[test]
    fn every_error_pushed_is_returned_in_order() {
        let mut errors = Errors::default();
        errors.push(syn::Error::new(Span::call_site(), "first"));
        errors.push(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = errors
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn take_empties_the_accumulator() {
        let mut errors = Errors::default();
        errors.push(syn::Error::new(Span::call_site(), "first"));
        assert!(errors.take().is_err());
        assert!(errors.take().is_ok());
        assert!(errors.check().is_ok());
    }

    #[test]
    fn no_error_checks_fine() {
        assert!(Errors::default().check().is_ok());
        assert!(Errors::default().into_error().is_none());
    }

    #[test]
    #[should_panic(expected = "never checked")]
    fn an_unchecked_error_is_a_bug() {
        let mut errors = Errors::default();
        errors.push(syn::Error::new(Span::call_site(), "lost"));
    }
}

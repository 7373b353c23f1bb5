//! `#[stage]`: parse, validate, expand.
//!
//! - `parse.rs` turns the attribute into a [`parse::StageAttr`] (role and options) and the item into a
//!   [`parse::StageImpl`] (the inherent impl block and the callbacks it defines).
//! - `validate.rs` checks them against each other (which options and callbacks the role has, option
//!   values, demand limits) and builds a [`validate::StageModel`].
//! - `expand.rs` writes the role trait impl and the `Stage` impl.
//!
//! The user's impl block is always emitted as written, errors or not, so that one mistake gives one
//! error and the rest of the crate still type-checks against the block's methods.

mod expand;
mod parse;
mod validate;

#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;

/// Expands `#[stage(attr)] item`; errors become `compile_error!`s next to the unchanged item.
pub(crate) fn expand_stage(attr: TokenStream, item: TokenStream) -> TokenStream {
    let (generated, error) = expand_checked(attr, item.clone());
    let mut out = item;
    out.extend(generated);
    if let Some(error) = error {
        out.extend(error.into_compile_error());
    }
    out
}

/// The generated impls (when the stage is sound enough to expand) and every error found.
fn expand_checked(attr: TokenStream, item: TokenStream) -> (TokenStream, Option<syn::Error>) {
    let attr = parse::parse_attr(attr);
    let stage = parse::parse_impl(item);
    let (attr, stage) = match (attr, stage) {
        (Ok(attr), Ok(stage)) => (attr, stage),
        (Err(mut error), Err(other)) => {
            error.combine(other);
            return (TokenStream::new(), Some(error));
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => return (TokenStream::new(), Some(error)),
    };
    let (model, error) = validate::validate_stage(attr, stage);
    let generated = model.as_ref().map(expand::expand_model).unwrap_or_default();
    (generated, error)
}

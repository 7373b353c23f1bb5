//! `#[stage]`: parse, validate, expand.
//!
//! - `parse.rs` turns the attribute into a [`parse::StageAttr`] (role and options) and the item into a
//!   [`parse::StageImpl`] (the inherent impl block and the callbacks it defines).
//! - `validate.rs` checks them against each other (which options and callbacks the role has, option
//!   values, demand limits) and builds a [`validate::StageModel`].
//! - `expand.rs` writes the role trait impl, the message trait impls (`handle_call`, `handle_cast`,
//!   `handle_info`) and the `Stage` impl.
//! - `fallback.rs` writes them instead when the stage is rejected, with a placeholder event type
//!   that `pipeline!` accepts silently, and the message trait impls of rejected message callbacks
//!   of a stage otherwise expanded.
//!
//! The user's impl block is always emitted as written, errors or not (but for a callback defined a
//! second time, reported and left out, and `lifetimes.rs`'s `'_` in an async callback's context),
//! and next to it the generated impls or their fallback, so
//! that one mistake gives one error and the rest of the crate still type-checks against the
//! block's methods and uses the stage.

mod expand;
mod fallback;
mod lifetimes;
mod parse;
mod validate;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// Expands `#[stage(attr)] item`; errors become `compile_error!`s next to the item, unchanged but
/// for a callback defined a second time.
pub(crate) fn expand_stage(attr: TokenStream, item: TokenStream) -> TokenStream {
    let (expanded, error) = expand_checked(attr.clone(), item.clone());
    let (block, generated) = match expanded {
        Some((rewritten, generated)) => (rewritten.unwrap_or(item), generated),
        None => {
            let generated = fallback::expand_fallback(&attr, &item);
            (item, generated)
        }
    };
    let mut out = lifetimes::with_context_lifetimes(block);
    out.extend(generated);
    if let Some(error) = error {
        out.extend(error.into_compile_error());
    }
    out
}

/// When the stage is sound enough to expand, the generated impls, with the impl block to emit in
/// place of the one written if it differs; and every error found.
fn expand_checked(
    attr: TokenStream,
    item: TokenStream,
) -> (
    Option<(Option<TokenStream>, TokenStream)>,
    Option<syn::Error>,
) {
    let attr = parse::parse_attr(attr);
    // The block as written, for the message impls of callbacks defined a second time.
    let as_written = item.clone();
    let stage = parse::parse_impl(item);
    let (attr, stage) = match (attr, stage) {
        (Ok(attr), Ok(stage)) => (attr, stage),
        (Err(mut error), Err(other)) => {
            error.combine(other);
            return (None, Some(error));
        }
        (Err(error), Ok(_)) | (Ok(_), Err(error)) => return (None, Some(error)),
    };
    let (model, error) = validate::validate_stage(attr, stage);
    let expanded = model.map(|model| {
        let mut generated = expand::expand_model(&model);
        if error.is_some() {
            // A message callback rejected, or defined a second time, is left out of the model: its
            // senders still type-check.
            let generics = expand::stage_generics(&model.item, &model.krate);
            let block = model
                .rewritten
                .then(|| syn::parse2::<syn::ItemImpl>(as_written).ok())
                .flatten()
                .map(|mut block| {
                    parse::without_trailing_plus(&mut block);
                    block
                });
            generated.extend(fallback::message_impls(
                block.as_ref().unwrap_or(&model.item),
                &model.krate,
                &generics,
                &model.messages,
            ));
        }
        let rewritten = model.rewritten.then(|| model.item.into_token_stream());
        (rewritten, generated)
    });
    (expanded, error)
}

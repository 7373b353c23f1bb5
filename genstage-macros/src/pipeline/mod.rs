//! `pipeline!`: parse, graph, validate, expand.
//!
//! - `parse.rs` splits the input at `;` and arrows and parses each piece (the macro's AST);
//! - `graph.rs` resolves stage names into one node per stage and one edge per arrow;
//! - `validate.rs` checks what the macro can see: wiring, cycles, group sizes, edge options;
//! - `expand.rs` writes the typed builder calls, with rustc doing the role and event-type checks;
//! - `rebuild.rs` tells the stage expressions that can be evaluated again for a restart.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

mod expand;
#[cfg(test)]
mod fuzz;
mod graph;
mod parse;
mod rebuild;
#[cfg(test)]
mod tests;
mod validate;

/// Added to the errors of a stage left alone: the one such stage that is no mistake, a producer
/// that waits for its first consumer, cannot be written in `pipeline!` (its graph is checked to
/// have none), and the error says where it is written instead.
const ALONE_HINT: &str = "(a producer that starts with no consumer, `without_consumers = wait` in its `#[stage]`, stands alone as a definition, `hub = Hub::new();`, its consumers subscribed through the running pipeline's handle)";

/// Expands `pipeline! { … }`; errors become `compile_error!`s.
pub(crate) fn expand_pipeline(input: TokenStream) -> TokenStream {
    let mut krate = quote!(::genstage);
    match try_expand(input.clone(), &mut krate) {
        Ok(tokens) => tokens,
        Err(error) => {
            // `krate` is set only once the input parsed: read the override from the tokens.
            if let Some(path) = parse::fallback_crate(input.clone()) {
                krate = quote!(#path);
            }
            fallback(&krate, error, input)
        }
    }
}

/// The value of a `pipeline!` that failed: still a value of the shape it would have had, so that
/// one mistake gives one error. A pipeline without names is an empty `Pipeline`; one with names
/// also has their fields, read from the tokens, each holding the value of the first
/// `compile_error!`, whose type is rustc's error type: code that uses a field (`p.queue.call(…)`)
/// then gives no error of its own.
fn fallback(krate: &TokenStream, error: syn::Error, input: TokenStream) -> TokenStream {
    let names = parse::defined_names(input);
    let mut errors = error.into_iter().map(|e| e.into_compile_error());
    if names.is_empty() {
        return quote! {
            {
                #( #errors )*
                #krate::Pipeline::new()
            }
        };
    }
    // A `syn::Error` holds at least one error.
    let first = errors.next();
    let rest = errors;
    let value = Ident::new("__error", Span::mixed_site());
    let fields: Vec<(Ident, TokenStream)> = names
        .into_iter()
        .map(|name| (name, quote!(#value)))
        .collect();
    let named = expand::with_names(krate, &fields, quote!(#krate::Pipeline::new()));
    quote! {
        {
            let #value = #first;
            #( #rest )*
            #named
        }
    }
}

fn try_expand(input: TokenStream, krate: &mut TokenStream) -> syn::Result<TokenStream> {
    let input = parse::parse_pipeline(input)?;
    if let Some(path) = &input.krate {
        *krate = quote!(#path);
    }
    let graph = graph::build_graph(input)?;
    let settings = validate::validate_graph(&graph)?;
    Ok(expand::expand_graph(&graph, &settings))
}

//! `pipeline!`: parse, graph, validate, expand.
//!
//! - `parse.rs` splits the input at `;` and arrows and parses each piece (the macro's AST);
//! - `graph.rs` resolves stage names into one node per stage and one edge per arrow;
//! - `validate.rs` checks what the macro can see: wiring, cycles, group sizes, edge options;
//! - `expand.rs` writes the typed builder calls, with rustc doing the role and event-type checks.

use proc_macro2::TokenStream;
use quote::quote;

mod expand;
mod graph;
mod parse;
#[cfg(test)]
mod tests;
mod validate;

/// Expands `pipeline! { … }`; errors become `compile_error!`s.
pub(crate) fn expand_pipeline(input: TokenStream) -> TokenStream {
    let mut krate = quote!(::genstage);
    match try_expand(input, &mut krate) {
        Ok(tokens) => tokens,
        // Still an expression of the right type, so one mistake gives one error.
        Err(error) => {
            let error = error.into_compile_error();
            quote! {
                {
                    #error
                    #krate::Pipeline::new()
                }
            }
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

//! `pipeline!`: parse, graph, validate, expand.

use proc_macro2::TokenStream;

/// Expands `pipeline! { … }`; errors become `compile_error!`s.
pub(crate) fn expand_pipeline(_input: TokenStream) -> TokenStream {
    syn::Error::new(
        proc_macro2::Span::call_site(),
        "pipeline! is not implemented yet",
    )
    .into_compile_error()
}

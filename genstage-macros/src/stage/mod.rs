//! `#[stage]`: parse, validate, expand.

use proc_macro2::TokenStream;

/// Expands `#[stage(attr)] item`; errors become `compile_error!`s.
pub(crate) fn expand_stage(_attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut out = syn::Error::new(
        proc_macro2::Span::call_site(),
        "#[stage] is not implemented yet",
    )
    .into_compile_error();
    out.extend(item);
    out
}

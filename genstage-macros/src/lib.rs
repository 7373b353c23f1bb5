//! The `#[stage]` and `pipeline!` macros of genstage. Use them through the `genstage` crate, whose
//! documentation describes them.
//!
//! Each entry point only parses, hands on, and turns errors into compile errors; the work lives in
//! `stage/` and `pipeline/`, each split into parse, validate and expand steps.

use proc_macro::TokenStream;

mod pipeline;
mod stage;

/// Turns an inherent impl block into a stage: `#[stage(producer | producer_consumer | consumer, …)]`.
#[proc_macro_attribute]
pub fn stage(attr: TokenStream, item: TokenStream) -> TokenStream {
    stage::expand_stage(attr.into(), item.into()).into()
}

/// Wires stages into a pipeline: `pipeline! { A -> B -> [C; 2] }`.
#[proc_macro]
pub fn pipeline(input: TokenStream) -> TokenStream {
    pipeline::expand_pipeline(input.into()).into()
}

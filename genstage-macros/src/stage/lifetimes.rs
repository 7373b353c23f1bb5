//! The user's impl block as `#[stage]` emits it: in an `async fn` callback, the lifetime of
//! `Context<Self>` written out as `'_`. Rust elides it in a plain `fn` but not in an `async fn`
//! (E0726, "implicit elided lifetime not allowed here"), so without this `ctx: &mut Context<Self>`
//! would compile in one and not in the other.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, GenericArgument, ImplItem, ItemImpl, Lifetime, PathArguments, Type};

use super::parse::{is_context, ungroup_mut, CallbackKind};

/// `block` with `'_` written into each `&mut Context<…>` argument without a lifetime of its
/// `async fn` callbacks; `block` itself when there is none, or when it is not an impl block.
pub(crate) fn with_context_lifetimes(block: TokenStream) -> TokenStream {
    let Ok(mut item) = syn::parse2::<ItemImpl>(block.clone()) else {
        return block;
    };
    let mut written = false;
    for item in &mut item.items {
        let ImplItem::Fn(method) = item else {
            continue;
        };
        // Only the callbacks: a method of the user's own may take a `Context` of its own.
        if method.sig.asyncness.is_none() || CallbackKind::from_ident(&method.sig.ident).is_none() {
            continue;
        }
        for arg in &mut method.sig.inputs {
            if let FnArg::Typed(typed) = arg {
                written |= write_lifetime(&mut typed.ty);
            }
        }
    }
    if written {
        item.into_token_stream()
    } else {
        block
    }
}

/// Writes `'_` into `ty` when it is `&mut …::Context<…>` (as validation reads a context
/// argument, through `macro_rules!` groups too) without a lifetime; says whether it did.
fn write_lifetime(ty: &mut Type) -> bool {
    if !is_context(ty) {
        return false;
    }
    let Type::Reference(reference) = ungroup_mut(ty) else {
        return false;
    };
    let Type::Path(path) = ungroup_mut(&mut reference.elem) else {
        return false;
    };
    let Some(last) = path.path.segments.last_mut() else {
        return false;
    };
    let PathArguments::AngleBracketed(args) = &mut last.arguments else {
        return false;
    };
    if args
        .args
        .iter()
        .any(|arg| matches!(arg, GenericArgument::Lifetime(_)))
    {
        return false;
    }
    let elided = Lifetime::new("'_", last.ident.span());
    args.args.insert(0, GenericArgument::Lifetime(elided));
    true
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::with_context_lifetimes;

    #[test]
    fn an_async_callbacks_context_gets_its_lifetime_written_out() {
        let block = quote! {
            impl S {
                async fn handle_cast(&mut self, m: u8, ctx: &mut Context<Self>) {}
                async fn handle_info(&mut self, m: u8, ctx: &mut genstage::Context<'_, Self>) {}
                fn handle_call(&mut self, m: u8, r: ReplyTo<u8>, ctx: &mut Context<Self>) {}
                async fn helper(&mut self, ctx: &mut Context<Self>) {}
            }
        };
        let text = with_context_lifetimes(block).to_string();
        let expected = [
            "async fn handle_cast (& mut self , m : u8 , ctx : & mut Context < '_ , Self >)",
            "async fn handle_info (& mut self , m : u8 , ctx : & mut genstage :: Context < '_ , Self >)",
            "fn handle_call (& mut self , m : u8 , r : ReplyTo < u8 > , ctx : & mut Context < Self >)",
            "async fn helper (& mut self , ctx : & mut Context < Self >)",
        ];
        for method in expected {
            assert!(text.contains(method), "{method}\n{text}");
        }
    }

    #[test]
    fn a_context_type_from_a_macro_rules_fragment_gets_its_lifetime_too() {
        // `ctx: &mut $ctx` with `$ctx:ty` = `Context<Self>`: the type behind the reference is an
        // invisible group.
        let context = proc_macro2::Group::new(proc_macro2::Delimiter::None, quote!(Context<Self>));
        let block = quote! {
            impl S {
                async fn handle_cast(&mut self, m: u8, ctx: &mut #context) {}
            }
        };
        let text = with_context_lifetimes(block).to_string();
        assert!(text.contains("Context < '_ , Self >"), "{text}");
    }

    #[test]
    fn what_is_not_an_impl_block_is_emitted_as_written() {
        let tokens = quote!(
            fn handle_cast(ctx: &mut Context<Self>) {}
        );
        assert_eq!(
            with_context_lifetimes(tokens.clone()).to_string(),
            tokens.to_string()
        );
    }
}

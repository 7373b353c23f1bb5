//! Which stage expressions `pipeline!` evaluates again to restart a stage: those that stand on
//! their own.
//!
//! An expression stands on its own when moving it into a closure, `move || <expr>`, changes
//! nothing: it uses no local variable and no `self` (the closure would take them, and a second
//! call would find them gone), and it contains nothing whose meaning depends on the function
//! around it (`?`, `.await`, `return`, `break`, `continue`), nor a macro call, whose tokens the
//! macro cannot read. The test is syntactic and conservative: every single-segment path in
//! expression position must be bound inside the expression (a closure's parameter, a `let` of one
//! of its blocks, a `match` arm's pattern) or start with an upper-case letter (a constant, a unit
//! or tuple struct, a const parameter); anything the visitor does not know (an item inside the
//! expression, `let` in a condition chain, a labelled `break`) counts as using a local. So does a
//! call of a bare lower-case name (`make()`, `from_iter(0..10)`): it may be a local closure, which
//! the constructor would take (and one that is `FnOnce`, or borrows, would no longer compile); a
//! function is called by its path (`genstage::from_iter(…)`, `self::make()`) to be evaluated
//! again.

use std::collections::HashSet;

use syn::visit::{self, Visit};
use syn::{Expr, Pat, Stmt};

/// Whether `expr` stands on its own, so that `pipeline!` can evaluate it again for a restart.
pub(crate) fn stands_alone(expr: &Expr) -> bool {
    let mut check = Check::default();
    check.visit_expr(expr);
    !check.open
}

/// The walk over one stage expression.
#[derive(Default)]
struct Check {
    /// The names bound inside the expression where the walk is, innermost last.
    scopes: Vec<HashSet<String>>,
    /// Inside a closure or an `async` block of the expression: its `return`, `?`, `.await`,
    /// `break` and `continue` are its own.
    fenced: usize,
    /// Inside a loop of the expression (and no closure inside it): an unlabelled `break` or
    /// `continue` is its own.
    loops: usize,
    /// The expression uses something from outside, or something the walk cannot tell about.
    open: bool,
}

impl Check {
    fn is_bound(&self, name: &str) -> bool {
        self.scopes.iter().any(|scope| scope.contains(name))
    }

    /// Walks `inner` with the names `pats` bind in scope.
    fn with_bindings<'a>(
        &mut self,
        pats: impl IntoIterator<Item = &'a Pat>,
        inner: impl FnOnce(&mut Self),
    ) {
        let mut scope = HashSet::new();
        for pat in pats {
            self.open |= !bindings(pat, &mut scope);
        }
        self.scopes.push(scope);
        inner(self);
        self.scopes.pop();
    }

    /// Walks `inner` inside a closure or an `async` block: a new function body.
    fn fenced(&mut self, inner: impl FnOnce(&mut Self)) {
        let loops = std::mem::take(&mut self.loops);
        self.fenced += 1;
        inner(self);
        self.fenced -= 1;
        self.loops = loops;
    }

    /// Walks the body of a loop of the expression.
    fn in_loop(&mut self, inner: impl FnOnce(&mut Self)) {
        self.loops += 1;
        inner(self);
        self.loops -= 1;
    }
}

impl<'ast> Visit<'ast> for Check {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        if self.open {
            return;
        }
        match expr {
            Expr::Path(path) => {
                if path.qself.is_none() && path.path.leading_colon.is_none() {
                    if let Some(ident) = path.path.get_ident() {
                        let name = ident.to_string();
                        let upper = name.starts_with(|c: char| c.is_uppercase());
                        self.open |= !upper && !self.is_bound(&name);
                    }
                }
                // Its generic arguments: types, which may hold a macro.
                visit::visit_expr_path(self, path);
            }
            // A bare callee is a path like any other: a local closure, perhaps.
            Expr::Call(call) => {
                self.visit_expr(&call.func);
                for arg in &call.args {
                    self.visit_expr(arg);
                }
            }
            Expr::Closure(closure) => self.with_bindings(&closure.inputs, |check| {
                check.fenced(|check| check.visit_expr(&closure.body))
            }),
            Expr::Async(block) => self.fenced(|check| check.visit_block(&block.block)),
            Expr::Match(expr_match) => {
                self.visit_expr(&expr_match.expr);
                for arm in &expr_match.arms {
                    self.with_bindings([&arm.pat], |check| {
                        if let Some((_, guard)) = &arm.guard {
                            check.visit_expr(guard);
                        }
                        check.visit_expr(&arm.body);
                    });
                }
            }
            Expr::ForLoop(for_loop) => {
                self.visit_expr(&for_loop.expr);
                self.with_bindings([&*for_loop.pat], |check| {
                    check.in_loop(|check| check.visit_block(&for_loop.body))
                });
            }
            Expr::While(expr_while) => match &*expr_while.cond {
                Expr::Let(cond) => {
                    self.visit_expr(&cond.expr);
                    self.with_bindings([&*cond.pat], |check| {
                        check.in_loop(|check| check.visit_block(&expr_while.body))
                    });
                }
                cond => {
                    self.visit_expr(cond);
                    self.in_loop(|check| check.visit_block(&expr_while.body));
                }
            },
            Expr::Loop(expr_loop) => self.in_loop(|check| check.visit_block(&expr_loop.body)),
            Expr::If(expr_if) => {
                match &*expr_if.cond {
                    Expr::Let(cond) => {
                        self.visit_expr(&cond.expr);
                        self.with_bindings([&*cond.pat], |check| {
                            check.visit_block(&expr_if.then_branch)
                        });
                    }
                    cond => {
                        self.visit_expr(cond);
                        self.visit_block(&expr_if.then_branch);
                    }
                }
                if let Some((_, otherwise)) = &expr_if.else_branch {
                    self.visit_expr(otherwise);
                }
            }
            Expr::Try(_) | Expr::Await(_) | Expr::Return(_) if self.fenced == 0 => {
                self.open = true;
            }
            Expr::Break(expr_break)
                if self.fenced == 0 && (self.loops == 0 || expr_break.label.is_some()) =>
            {
                self.open = true;
            }
            Expr::Continue(expr_continue)
                if self.fenced == 0 && (self.loops == 0 || expr_continue.label.is_some()) =>
            {
                self.open = true;
            }
            // `let` in a condition chain, `yield`, a macro call, tokens syn keeps unparsed.
            Expr::Let(_) | Expr::Yield(_) | Expr::Macro(_) | Expr::Verbatim(_) => {
                self.open = true;
            }
            other => visit::visit_expr(self, other),
        }
    }

    fn visit_block(&mut self, block: &'ast syn::Block) {
        self.scopes.push(HashSet::new());
        for stmt in &block.stmts {
            if self.open {
                break;
            }
            match stmt {
                Stmt::Local(local) => {
                    if let Some(init) = &local.init {
                        self.visit_expr(&init.expr);
                        if let Some((_, diverge)) = &init.diverge {
                            self.visit_expr(diverge);
                        }
                    }
                    // In scope from the next statement on.
                    let mut bound = HashSet::new();
                    self.open |= !bindings(&local.pat, &mut bound);
                    if let Some(scope) = self.scopes.last_mut() {
                        scope.extend(bound);
                    }
                }
                Stmt::Expr(expr, _) => self.visit_expr(expr),
                // An item's body is its own scope, which the walk does not follow.
                Stmt::Item(_) | Stmt::Macro(_) => self.open = true,
            }
        }
        self.scopes.pop();
    }

    // A macro anywhere else: in a type (`Vec<ty!()>`) or a pattern.
    fn visit_macro(&mut self, _: &'ast syn::Macro) {
        self.open = true;
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {
        self.open = true;
    }
}

/// Adds the names `pat` binds to `names`; false when the pattern holds something the walk cannot
/// read (a macro, unparsed tokens).
fn bindings(pat: &Pat, names: &mut HashSet<String>) -> bool {
    struct Bindings<'n> {
        names: &'n mut HashSet<String>,
        readable: bool,
    }
    impl<'ast> Visit<'ast> for Bindings<'_> {
        fn visit_pat(&mut self, pat: &'ast Pat) {
            match pat {
                Pat::Macro(_) | Pat::Verbatim(_) => self.readable = false,
                other => visit::visit_pat(self, other),
            }
        }
        fn visit_pat_ident(&mut self, pat: &'ast syn::PatIdent) {
            self.names.insert(pat.ident.to_string());
            visit::visit_pat_ident(self, pat);
        }
        fn visit_macro(&mut self, _: &'ast syn::Macro) {
            self.readable = false;
        }
    }
    let mut walk = Bindings {
        names,
        readable: true,
    };
    walk.visit_pat(pat);
    walk.readable
}

#[cfg(test)]
mod tests {
    use super::stands_alone;

    #[track_caller]
    fn check(text: &str) -> bool {
        let expr: syn::Expr = syn::parse_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        stands_alone(&expr)
    }

    #[test]
    fn expressions_that_stand_alone_are_evaluated_again() {
        let cases: &[(&str, bool)] = &[
            ("Counter::new(0)", true),
            ("Flaky { fail_on: 3 }", true),
            ("Worker", true),
            ("genstage::from_iter(0..10)", true),
            ("from_iter(0..10)", false),
            ("make()", false),
            ("self::make()", true),
            ("Store(3)", true),
            ("genstage::from_iter((0..20u64).map(|n| 2 * n))", true),
            ("Counter { next: 0, end: Some(100) }", true),
            ("Printer::next()", true),
            ("Worker::new(LIMIT)", true),
            ("Worker::new(config::LIMIT)", true),
            ("Forward::<fn() -> u64>::new()", true),
            ("Worker::new(<u64 as Default>::default())", true),
            ("Label::new(String::from(\"a\"))", true),
            ("genstage::from_iter(0..N as u64)", true),
            ("{ let n = 3; Worker::new(n) }", true),
            ("genstage::from_iter((0..10).map(|n| match n { 0 => 1, m => m * 2 }))", true),
            ("genstage::from_iter((0..10).filter_map(|s: u64| Some(s.checked_add(1)?)))", true),
            ("genstage::from_iter((0..10).map(|n| { if let Some(m) = n.checked_sub(1) { m } else { 0 } }))", true),
            ("genstage::from_iter({ let mut v = Vec::new(); for i in 0..3 { if i == 2 { break; } v.push(i); } v })", true),
            ("Worker::new(cfg.clone())", false),
            ("Counter { next: 0, end }", false),
            ("Counter { next: 0, end: end }", false),
            ("Queue::new(rx)", false),
            ("x?", false),
            ("Worker::new(load()?)", false),
            ("Worker::new(format!(\"{}\", 1))", false),
            ("genstage::from_iter(vec![1, 2, 3])", false),
            ("self.x", false),
            ("Worker::new(self)", false),
            ("worker", false),
            ("Worker::new(make().await)", false),
            ("Worker::new({ return Worker; })", false),
            ("loop { break Worker; }", true),
            ("Worker::new(if ready { 1 } else { 2 })", false),
            ("{ let n = m; Worker::new(n) }", false),
            ("{ Worker::new(n); let n = 1; }", false),
            ("genstage::from_iter((0..10).map(|n| n + offset))", false),
            ("Worker::new(&data)", false),
            ("genstage::from_iter(items.into_iter())", false),
            ("Worker::new(Config { ..base })", false),
            ("{ fn helper() -> u64 { 1 } Worker::new(helper()) }", false),
            ("Worker::new(Vec::<ty!()>::new())", false),
            ("genstage::from_iter((0..3).map(|n| match n { id!() => 1, _ => 0 }))", false),
            ("Worker::new(if let Some(x) = y { x } else { 0 })", false),
            ("Worker::new(if let Some(x) = Some(1) { x } else { x })", false),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(text, expected)| check(text) != *expected)
            .map(|(text, expected)| format!("{text}: expected {expected}"))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}

//! The options both macros read, written once: their keywords (as serde's `internals/symbol.rs`
//! keeps its attribute names) and the rules of their values, each with one wording, so that
//! `#[stage(consumer, max_demand = 0)]` and `-[max_demand = 0]->` give the same error.

use std::fmt;

use proc_macro2::Ident;
use syn::{Expr, ExprLit, Lit};

/// The `Self` in the path `crate = …` names the genstage crate by, if there is one: `Self` names a
/// type, not a module, and the expansions' `use` declarations cannot go through it. (The path is
/// parsed as a path of modules, `syn::Path::parse_mod_style`: generic arguments, which the
/// expansions would write into expressions as comparisons, are already refused there.)
pub(crate) fn self_in_crate_path(path: &syn::Path) -> Option<&Ident> {
    path.segments
        .iter()
        .map(|segment| &segment.ident)
        .find(|ident| *ident == "Self")
}

/// An option's keyword.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Symbol(&'static str);

/// `max_demand = n`: most events outstanding per subscription.
pub(crate) const MAX_DEMAND: Symbol = Symbol("max_demand");
/// `min_demand = n`: the outstanding demand at which a consumer asks again.
pub(crate) const MIN_DEMAND: Symbol = Symbol("min_demand");
/// `cancel = permanent | transient | temporary`.
pub(crate) const CANCEL: Symbol = Symbol("cancel");
/// `buffer_size = n | infinity`.
pub(crate) const BUFFER_SIZE: Symbol = Symbol("buffer_size");
/// `buffer_keep = first | last`.
pub(crate) const BUFFER_KEEP: Symbol = Symbol("buffer_keep");
/// `demand = forward | accumulate`: a producer's demand mode.
pub(crate) const DEMAND: Symbol = Symbol("demand");
/// `without_consumers = stop | wait`: whether a producer or producer_consumer stops without
/// consumers, or waits for them.
pub(crate) const WITHOUT_CONSUMERS: Symbol = Symbol("without_consumers");
/// `dispatcher = demand | broadcast | partition(n)`: which consumers get a stage's events.
pub(crate) const DISPATCHER: Symbol = Symbol("dispatcher");
/// `partition = i` (an edge): the partition of a partitioned stage that the edge takes.
pub(crate) const PARTITION: Symbol = Symbol("partition");
/// `selector = |event: &T| …` (an edge): the events of a broadcasting stage that the edge takes.
pub(crate) const SELECTOR: Symbol = Symbol("selector");
/// `crate = "path"` (`#[stage]`) or `crate = path;` (`pipeline!`).
pub(crate) const CRATE: Symbol = Symbol("crate");
/// `restart = permanent | transient | temporary`: when a failed or ended stage is restarted.
pub(crate) const RESTART: Symbol = Symbol("restart");
/// `max_restarts = n`: at most `n` restarts within `max_seconds` (OTP's `max_restarts`).
pub(crate) const MAX_RESTARTS: Symbol = Symbol("max_restarts");
/// `max_seconds = s`: the window `max_restarts` counts restarts in (OTP's `max_seconds`).
pub(crate) const MAX_SECONDS: Symbol = Symbol("max_seconds");
/// `redeliver` (a flag): the batch a failed stage held is handed again to the restarted stage.
pub(crate) const REDELIVER: Symbol = Symbol("redeliver");

/// The options written without a value: `#[stage(consumer, redeliver)]`.
pub(crate) const FLAGS: &[Symbol] = &[REDELIVER];

/// The options of an edge: those of a subscription, and the dispatcher's.
pub(crate) const EDGE_OPTIONS: &[Symbol] = &[MAX_DEMAND, MIN_DEMAND, CANCEL, PARTITION, SELECTOR];

/// GenStage's default `max_demand`.
pub(crate) const DEFAULT_MAX_DEMAND: usize = 1000;

/// `cancel`'s values, with the `CancelMode` variant each names.
pub(crate) const CANCEL_MODES: &[(&str, &str)] = &[
    ("permanent", "Permanent"),
    ("transient", "Transient"),
    ("temporary", "Temporary"),
];

/// `restart`'s values, with the `Restart` variant each names (OTP's child restart values).
pub(crate) const RESTARTS: &[(&str, &str)] = &[
    ("permanent", "Permanent"),
    ("transient", "Transient"),
    ("temporary", "Temporary"),
];

/// OTP's `max_restarts` default (the runtime's `DEFAULT_MAX_RESTARTS`, which a test below keeps
/// equal).
pub(crate) const DEFAULT_MAX_RESTARTS: u32 = 3;

/// OTP's `max_seconds` default (the runtime's `DEFAULT_RESTART_WINDOW`, which a test below keeps
/// equal).
pub(crate) const DEFAULT_MAX_SECONDS: u64 = 5;

/// `buffer_keep`'s values, with the `BufferKeep` variant each names.
pub(crate) const BUFFER_KEEPS: &[(&str, &str)] = &[("first", "First"), ("last", "Last")];

/// `demand`'s values, with the `DemandMode` variant each names.
pub(crate) const DEMAND_MODES: &[(&str, &str)] =
    &[("forward", "Forward"), ("accumulate", "Accumulate")];

/// `without_consumers`'s values, with the `WithoutConsumers` variant each names.
pub(crate) const WITHOUT_CONSUMERS_CHOICES: &[(&str, &str)] = &[("stop", "Stop"), ("wait", "Wait")];

impl Symbol {
    /// The keyword as written.
    pub(crate) fn name(self) -> &'static str {
        self.0
    }
}

impl PartialEq<Symbol> for Ident {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl PartialEq<Symbol> for &Ident {
    fn eq(&self, word: &Symbol) -> bool {
        *self == word.0
    }
}

impl PartialEq<Symbol> for str {
    fn eq(&self, word: &Symbol) -> bool {
        self == word.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `a`, `a and b`, `a, b and c`, each in backticks.
pub(crate) fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// A count option (`max_demand`, `min_demand`, `buffer_size`): the value of an integer literal,
/// checked here, or `None` for any other expression, which rustc checks to be a `usize`.
pub(crate) fn count(key: &Ident, value: &Expr) -> syn::Result<Option<usize>> {
    let what = if *key == BUFFER_SIZE {
        "a number of events (a `usize`) or `infinity`"
    } else {
        "a number of events (a `usize`)"
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse::<usize>().map(Some).map_err(|_| {
            syn::Error::new(
                int.span(),
                format!("`{key}` is {what}; `{int}` is too large"),
            )
        }),
        Expr::Lit(lit) => Err(syn::Error::new_spanned(
            lit,
            format!("`{key}` is {what}, not this literal"),
        )),
        _ => Ok(None),
    }
}

/// `buffer_size`'s value for a buffer without bound.
pub(crate) const INFINITY: &str = "infinity";

/// Other words for [`INFINITY`] that a user may write for it.
const INFINITY_WORDS: &[&str] = &["inf", "infinite", "unbounded", "unlimited"];

/// A `buffer_size` value that is surely a misspelling of `infinity`, with its error. `buffer_size`
/// takes any `usize` expression (`SIZE`, `self.size`, `config::SIZE * 2`), so only a lone
/// identifier with a lower-case letter is judged (the value is read in a method of the stage,
/// where no local variable is in scope, and a constant's name is in upper case): one within two
/// edits of `infinity`, letter case aside (`infinite`, `infinty`, `Infinity`), or another word
/// for it (`inf`, `unbounded`, `unlimited`). An upper-case name (`INFINITY`) may be the user's
/// constant, and is left to rustc.
pub(crate) fn misspelled_infinity(value: &Expr) -> Option<syn::Error> {
    let Expr::Path(path) = value else {
        return None;
    };
    if path.qself.is_some() || !path.attrs.is_empty() {
        return None;
    }
    let ident = path.path.get_ident()?;
    let name = syn::ext::IdentExt::unraw(ident).to_string();
    if name == INFINITY || !name.chars().any(|c| c.is_lowercase()) {
        return None;
    }
    let lower = name.to_lowercase();
    let close = edit_distance(&lower, INFINITY) <= 2 || INFINITY_WORDS.contains(&lower.as_str());
    close.then(|| {
        syn::Error::new(
            ident.span(),
            format!(
                "unknown {BUFFER_SIZE} value `{name}`: `{BUFFER_SIZE}` is a number of events (a \
                 `usize` expression) or `{INFINITY}`, for a buffer without bound"
            ),
        )
    })
}

/// Levenshtein's distance between two words: the fewest characters inserted, removed or replaced
/// to make one the other.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let replace = previous[j] + usize::from(ca != *cb);
            current.push(replace.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// An edge's `partition = i`: the value of an integer literal, checked here, or `None` for any
/// other expression, which rustc checks to be a `usize` and `run()` to be below the stage's
/// number of partitions.
pub(crate) fn partition_index(value: &Expr) -> syn::Result<Option<usize>> {
    const WHAT: &str = "`partition` is the index of a partition (a `usize`, from 0)";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int
            .base10_parse::<usize>()
            .map(Some)
            .map_err(|_| syn::Error::new(int.span(), format!("{WHAT}; `{int}` is too large"))),
        Expr::Lit(lit) => Err(syn::Error::new_spanned(
            lit,
            format!("{WHAT}, not this literal"),
        )),
        _ => Ok(None),
    }
}

/// The largest `max_demand`: the runtime's `MAX_DEMAND_LIMIT` (2^30), which a test below keeps
/// equal.
pub(crate) const MAX_DEMAND_LIMIT: usize = 1 << 30;

/// `max_demand`'s rule: at least 1 and at most [`MAX_DEMAND_LIMIT`], checked for a literal.
pub(crate) fn check_max_demand(value: &Expr, literal: Option<usize>) -> syn::Result<()> {
    match literal {
        Some(0) => Err(syn::Error::new_spanned(
            value,
            "`max_demand` must be at least 1: a stage that asks for 0 events never gets any",
        )),
        Some(max) if max > MAX_DEMAND_LIMIT => Err(syn::Error::new_spanned(
            value,
            format!(
                "`max_demand` must be at most 1073741824 (2^30), so that demand summed over \
                 consumers cannot overflow; got {max}"
            ),
        )),
        _ => Ok(()),
    }
}

/// Where the `max_demand` a `min_demand` is checked against comes from.
#[derive(Clone, Copy)]
pub(crate) enum MaxDemand {
    /// Set next to it, to this value.
    Set(usize),
    /// Not set: GenStage's default.
    Default,
}

/// `min_demand`'s rule: less than `max_demand`, checked for literals. The error is under
/// `value`, the `min_demand` value.
pub(crate) fn check_min_demand(value: &Expr, min: usize, max: MaxDemand) -> syn::Result<()> {
    let (max, how) = match max {
        MaxDemand::Set(max) => (max, ""),
        MaxDemand::Default => (DEFAULT_MAX_DEMAND, " by default"),
    };
    if min < max || max == 0 {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        value,
        min_demand_message(min, max, how),
    ))
}

/// The error of a `min_demand` that is not below `max_demand` (`how`: `""` or `" by default"`).
pub(crate) fn min_demand_message(min: usize, max: usize, how: &str) -> String {
    format!("`min_demand` must be less than `max_demand`, which is {max}{how}; got {min}")
}

/// An option whose value is one of a few names (`cancel`, `buffer_keep`): the matching variant's
/// identifier, spanned at the user's value.
pub(crate) fn choice(
    key: &Ident,
    value: &Expr,
    choices: &[(&str, &str)],
    what: &str,
) -> syn::Result<Ident> {
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let expected = list(&names).replacen(" and ", " or ", 1);
    if let Expr::Path(path) = value {
        if let Some(ident) = path.path.get_ident() {
            if path.qself.is_none() && path.attrs.is_empty() {
                return match choices.iter().find(|(name, _)| ident == name) {
                    Some((_, variant)) => Ok(Ident::new(variant, ident.span())),
                    None => Err(syn::Error::new(
                        ident.span(),
                        format!("unknown {what} `{ident}`: `{key}` is {expected}"),
                    )),
                };
            }
        }
    }
    Err(syn::Error::new_spanned(
        value,
        format!("`{key}` is {expected}"),
    ))
}

/// `max_restarts = n`: the value of an integer literal (a `u32`; 0 stops the stage at its first
/// failure).
pub(crate) fn max_restarts(value: &Expr) -> syn::Result<u32> {
    const WHAT: &str = "`max_restarts` is the number of restarts allowed within `max_seconds`, an integer literal (a `u32`)";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int
            .base10_parse::<u32>()
            .map_err(|_| syn::Error::new(int.span(), format!("{WHAT}; `{int}` is too large"))),
        other => Err(syn::Error::new_spanned(other, format!("{WHAT}, not this"))),
    }
}

/// `max_seconds = s`: the value of an integer literal of at least 1 (a `u64`), as OTP's
/// `max_seconds` is a positive integer.
pub(crate) fn max_seconds(value: &Expr) -> syn::Result<u64> {
    const WHAT: &str =
        "`max_seconds` is the window, in seconds, in which at most `max_restarts` restarts are allowed";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(0) => Err(syn::Error::new(
                int.span(),
                "`max_seconds` must be at least 1, as OTP's supervisors require a period of at least 1 second: it is the window in which at most `max_restarts` restarts are allowed",
            )),
            Ok(seconds) => Ok(seconds),
            Err(_) => Err(syn::Error::new(
                int.span(),
                format!("{WHAT}; `{int}` is too large"),
            )),
        },
        other => Err(syn::Error::new_spanned(
            other,
            format!("{WHAT}: an integer literal of at least 1, not this"),
        )),
    }
}

/// The dispatchers, as messages list them.
pub(crate) const DISPATCHERS: &str = "`demand`, `broadcast` or `partition(n)`";

/// The most partitions a stage has (the runtime's `dispatcher::MAX_PARTITIONS`, which this crate
/// cannot name).
pub(crate) const MAX_PARTITIONS: usize = 1 << 16;

/// The dispatcher a `dispatcher = …` option names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dispatcher {
    /// `demand`: GenStage's DemandDispatcher, the default.
    Demand,
    /// `broadcast`: every event to every consumer.
    Broadcast,
    /// `partition(n)`: each event to the consumer of its partition, `n` of them.
    Partition(usize),
}

/// `dispatcher`'s rule: `demand`, `broadcast` or `partition(n)` with `n` an integer literal of at
/// least 1. `stage` names the stage in the messages.
pub(crate) fn dispatcher(stage: &str, value: &Expr) -> syn::Result<Dispatcher> {
    let named = |expr: &Expr| match expr {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
            path.path.get_ident().cloned()
        }
        _ => None,
    };
    let unknown = |ident: &Ident| {
        syn::Error::new(
            ident.span(),
            format!("unknown dispatcher `{ident}` for `{stage}`: `dispatcher` is {DISPATCHERS}"),
        )
    };
    if let Some(ident) = named(value) {
        return match ident.to_string().as_str() {
            "demand" => Ok(Dispatcher::Demand),
            "broadcast" => Ok(Dispatcher::Broadcast),
            "partition" => Err(syn::Error::new(
                ident.span(),
                format!(
                    "`partition` needs the number of partitions of `{stage}`: write `dispatcher = partition(n)`, with `n` an integer literal of at least 1"
                ),
            )),
            _ => Err(unknown(&ident)),
        };
    }
    if let Expr::Call(call) = value {
        if let Some(ident) = named(&call.func) {
            if ident != "partition" {
                return Err(match ident.to_string().as_str() {
                    "demand" | "broadcast" => syn::Error::new_spanned(
                        value,
                        format!("`{ident}` takes no arguments: `dispatcher` of `{stage}` is {DISPATCHERS}"),
                    ),
                    _ => unknown(&ident),
                });
            }
            let args: Vec<&Expr> = call.args.iter().collect();
            let what = format!(
                "the number of partitions of `{stage}` is an integer literal of at least 1, as in `partition(2)`"
            );
            let [count] = args.as_slice() else {
                return Err(syn::Error::new(
                    call.paren_token.span.join(),
                    format!("`partition(n)` takes one argument: {what}"),
                ));
            };
            return match count {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                }) => match int.base10_parse::<usize>() {
                    Ok(0) => Err(syn::Error::new(
                        int.span(),
                        format!(
                            "`partition(0)` gives `{stage}` no partition to send its events to: {what}"
                        ),
                    )),
                    Ok(count) if count <= MAX_PARTITIONS => Ok(Dispatcher::Partition(count)),
                    _ => Err(syn::Error::new(
                        int.span(),
                        format!(
                            "`{int}` partitions are too many for `{stage}`: a stage has at most \
                             {MAX_PARTITIONS} partitions"
                        ),
                    )),
                },
                other => Err(syn::Error::new_spanned(
                    other,
                    format!("{what}, so that `pipeline!` can check the wiring; this is not one"),
                )),
            };
        }
    }
    Err(syn::Error::new_spanned(
        value,
        format!("`dispatcher` of `{stage}` is {DISPATCHERS}"),
    ))
}

/// The error of an option set twice, under its second key.
pub(crate) fn duplicate(key: &Ident) -> syn::Error {
    syn::Error::new(
        key.span(),
        format!("duplicate option `{key}`: it is set once already"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The macros check literals against the runtime's own constants.
    #[test]
    fn the_demand_constants_are_the_runtimes() {
        assert_eq!(super::DEFAULT_MAX_DEMAND, genstage::DEFAULT_MAX_DEMAND);
        assert_eq!(super::MAX_DEMAND_LIMIT, genstage::MAX_DEMAND_LIMIT);
    }

    /// The restart defaults are OTP's, as the runtime has them.
    #[test]
    fn the_restart_defaults_are_the_runtimes() {
        assert_eq!(super::DEFAULT_MAX_RESTARTS, genstage::DEFAULT_MAX_RESTARTS);
        assert_eq!(
            std::time::Duration::from_secs(super::DEFAULT_MAX_SECONDS),
            genstage::DEFAULT_RESTART_WINDOW
        );
    }

    #[test]
    fn restart_limits_are_integer_literals() {
        assert_eq!(max_restarts(&expr("0")).unwrap(), 0);
        assert_eq!(max_restarts(&expr("10")).unwrap(), 10);
        assert_eq!(
            max_restarts(&expr("4294967296")).unwrap_err().to_string(),
            "`max_restarts` is the number of restarts allowed within `max_seconds`, an integer literal (a `u32`); `4294967296` is too large"
        );
        assert_eq!(
            max_restarts(&expr("n")).unwrap_err().to_string(),
            "`max_restarts` is the number of restarts allowed within `max_seconds`, an integer literal (a `u32`), not this"
        );
        assert_eq!(max_seconds(&expr("1")).unwrap(), 1);
        assert_eq!(max_seconds(&expr("60")).unwrap(), 60);
        assert_eq!(
            max_seconds(&expr("0")).unwrap_err().to_string(),
            "`max_seconds` must be at least 1, as OTP's supervisors require a period of at least 1 second: it is the window in which at most `max_restarts` restarts are allowed"
        );
        assert_eq!(
            max_seconds(&expr("five")).unwrap_err().to_string(),
            "`max_seconds` is the window, in seconds, in which at most `max_restarts` restarts are allowed: an integer literal of at least 1, not this"
        );
        assert!(max_seconds(&expr("\"5\"")).is_err());
    }

    #[test]
    fn restart_values_are_otps() {
        let restart = |text: &str| choice(&key("restart"), &expr(text), RESTARTS, "restart value");
        assert_eq!(restart("transient").unwrap().to_string(), "Transient");
        assert_eq!(restart("permanent").unwrap().to_string(), "Permanent");
        assert_eq!(restart("temporary").unwrap().to_string(), "Temporary");
        assert_eq!(
            restart("always").unwrap_err().to_string(),
            "unknown restart value `always`: `restart` is `permanent`, `transient` or `temporary`"
        );
    }

    fn expr(text: &str) -> Expr {
        syn::parse_str(text).expect("test expressions parse")
    }

    fn key(name: &str) -> Ident {
        Ident::new(name, proc_macro2::Span::call_site())
    }

    #[test]
    fn counts_are_literals_in_range_or_expressions() {
        assert_eq!(count(&key("max_demand"), &expr("10")).unwrap(), Some(10));
        assert_eq!(count(&key("max_demand"), &expr("n + 1")).unwrap(), None);
        let error = count(&key("max_demand"), &expr("\"10\"")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`max_demand` is a number of events (a `usize`), not this literal"
        );
        let error = count(&key("min_demand"), &expr("1000000000000000000000")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`min_demand` is a number of events (a `usize`); `1000000000000000000000` is too large"
        );
    }

    #[test]
    fn misspellings_of_infinity_are_caught_and_expressions_are_not() {
        let error = |text: &str| misspelled_infinity(&expr(text)).map(|e| e.to_string());
        for wrong in [
            "infinite",
            "infinty",
            "infinit",
            "Infinity",
            "infinityy",
            "inf",
            "unbounded",
            "unlimited",
            "r#infinite",
        ] {
            let name = wrong.trim_start_matches("r#");
            assert_eq!(
                error(wrong).as_deref(),
                Some(format!("unknown buffer_size value `{name}`: `buffer_size` is a number of events (a `usize` expression) or `infinity`, for a buffer without bound").as_str()),
                "{wrong}"
            );
        }
        for right in [
            "infinity",
            "INFINITY",
            "SIZE",
            "self.size",
            "size",
            "config::infinite",
            "infinite()",
            "10",
            "usize::MAX",
            "<T>::infinite",
            "finite_size",
        ] {
            assert_eq!(error(right), None, "{right}");
        }
        assert_eq!(edit_distance("infinity", "infinity"), 0);
        assert_eq!(edit_distance("infinite", "infinity"), 1);
        assert_eq!(edit_distance("", "inf"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn demand_rules_have_one_wording() {
        assert!(check_max_demand(&expr("0"), Some(0)).is_err());
        assert!(check_max_demand(&expr("1"), Some(1)).is_ok());
        let error = check_min_demand(&expr("10"), 10, MaxDemand::Set(10)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`min_demand` must be less than `max_demand`, which is 10; got 10"
        );
        let error = check_min_demand(&expr("1000"), 1000, MaxDemand::Default).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`min_demand` must be less than `max_demand`, which is 1000 by default; got 1000"
        );
        assert!(check_min_demand(&expr("999"), 999, MaxDemand::Default).is_ok());
        // A `max_demand` of 0 has its own error.
        assert!(check_min_demand(&expr("5"), 5, MaxDemand::Set(0)).is_ok());
    }

    #[test]
    fn dispatchers_are_demand_broadcast_or_a_literal_partition_count() {
        let ok = |text: &str| dispatcher("Split", &expr(text)).unwrap();
        assert_eq!(ok("demand"), Dispatcher::Demand);
        assert_eq!(ok("broadcast"), Dispatcher::Broadcast);
        assert_eq!(ok("partition(2)"), Dispatcher::Partition(2));
        let error = |text: &str| dispatcher("Split", &expr(text)).unwrap_err().to_string();
        assert_eq!(
            error("brodcast"),
            "unknown dispatcher `brodcast` for `Split`: `dispatcher` is `demand`, `broadcast` or `partition(n)`"
        );
        assert_eq!(
            error("round_robin(2)"),
            "unknown dispatcher `round_robin` for `Split`: `dispatcher` is `demand`, `broadcast` or `partition(n)`"
        );
        assert_eq!(
            error("partition(0)"),
            "`partition(0)` gives `Split` no partition to send its events to: the number of partitions of `Split` is an integer literal of at least 1, as in `partition(2)`"
        );
        assert!(error("partition").starts_with("`partition` needs the number of partitions"));
        assert_eq!(
            error("partition(65537)"),
            "`65537` partitions are too many for `Split`: a stage has at most 65536 partitions"
        );
        assert_eq!(ok("partition(65536)"), Dispatcher::Partition(65536));
        assert!(error("partition(n)").contains("so that `pipeline!` can check the wiring"));
        assert!(error("partition(1, 2)").starts_with("`partition(n)` takes one argument"));
        assert!(error("partition()").starts_with("`partition(n)` takes one argument"));
        assert!(error("broadcast(2)").starts_with("`broadcast` takes no arguments"));
        assert_eq!(
            error("\"broadcast\""),
            "`dispatcher` of `Split` is `demand`, `broadcast` or `partition(n)`"
        );
    }

    #[test]
    fn choices_name_the_allowed_values() {
        let mode = choice(
            &key("cancel"),
            &expr("temporary"),
            CANCEL_MODES,
            "cancel mode",
        );
        assert_eq!(mode.unwrap().to_string(), "Temporary");
        let error = choice(
            &key("cancel"),
            &expr("sometimes"),
            CANCEL_MODES,
            "cancel mode",
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            "unknown cancel mode `sometimes`: `cancel` is `permanent`, `transient` or `temporary`"
        );
        let error = choice(
            &key("buffer_keep"),
            &expr("1"),
            BUFFER_KEEPS,
            "buffer_keep value",
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            "`buffer_keep` is `first` or `last`"
        );
        let mode = choice(
            &key("demand"),
            &expr("accumulate"),
            DEMAND_MODES,
            "demand mode",
        );
        assert_eq!(mode.unwrap().to_string(), "Accumulate");
        let error = choice(&key("demand"), &expr("manual"), DEMAND_MODES, "demand mode");
        assert_eq!(
            error.unwrap_err().to_string(),
            "unknown demand mode `manual`: `demand` is `forward` or `accumulate`"
        );
        let without = choice(
            &key("without_consumers"),
            &expr("wait"),
            WITHOUT_CONSUMERS_CHOICES,
            "without_consumers value",
        );
        assert_eq!(without.unwrap().to_string(), "Wait");
        let error = choice(
            &key("without_consumers"),
            &expr("linger"),
            WITHOUT_CONSUMERS_CHOICES,
            "without_consumers value",
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            "unknown without_consumers value `linger`: `without_consumers` is `stop` or `wait`"
        );
    }
}

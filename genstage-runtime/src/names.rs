//! Stage names in the report and in errors: unique, and the same whichever way a stage was added.
//!
//! # Scheme
//!
//! - A stage's name is either **given** (`add_*_named`, `add_*_as(Some(..))`, `name = Stage` in
//!   `pipeline!`) or **generated** from its type: `Printer` for `my::stages::Printer<u64>`, and
//!   `from_iter` for a [`from_iter`](crate::from_iter) producer, through the builder and
//!   `pipeline!` alike.
//! - The instances of one group `[C; n]` of `pipeline!` (n ≥ 2), or of the builder's
//!   `add_consumers` and `add_producer_consumers`, share their name and are told apart by their
//!   index: `Printer[0]`, `Printer[1]`, … (`printers[0]`, … for `printers = [C; n]`).
//! - Generated names are made unique: a second stage (or group) named after the type `Tap` is
//!   `Tap#2`, a third `Tap#3` (a suffix whose names are taken already is skipped), so two unnamed
//!   stages of one type in different chains are legal.
//! - A given name must differ from every other stage's name, given or generated (`Printer[0]`
//!   beside an unnamed `[Printer; 2]`): `run()` returns [`PipelineError::DuplicateName`] naming
//!   both stages.

use std::collections::{HashMap, HashSet};

use crate::error::PipelineError;

/// How a stage got its name (its base name lives beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Naming {
    /// Given by the user rather than generated from the stage's type.
    pub(crate) given: bool,
    /// The group of `pipeline!` the stage is an instance of: the same key for every instance.
    pub(crate) group: Option<usize>,
}

/// A new stage's name, the one given or else `default` or its type's, and how it got it.
pub(crate) fn stage_name<S>(given: Option<String>, default: Option<&str>) -> (String, Naming) {
    let naming = Naming {
        given: given.is_some(),
        group: None,
    };
    let name = given.unwrap_or_else(|| default.map_or_else(type_name::<S>, str::to_owned));
    (name, naming)
}

/// The name a stage of type `T` gets when none is given: the type's name without its path and
/// generic arguments.
pub(crate) fn type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base).to_owned()
}

/// A stage name, or a group of instances sharing one, in the order first added.
struct Node<'a> {
    base: &'a str,
    given: bool,
    /// The stages it names, by index.
    members: Vec<usize>,
}

impl Node<'_> {
    /// The members' names under `base`: `base` alone, or `base[0]`, `base[1]`, … for a group.
    fn names(&self, base: &str) -> Vec<String> {
        if self.members.len() == 1 {
            vec![base.to_owned()]
        } else {
            (0..self.members.len())
                .map(|i| format!("{base}[{i}]"))
                .collect()
        }
    }

    /// How member `i` got its name, for an error: "stage #3 (named explicitly)".
    fn describe(&self, i: usize) -> String {
        let stage = self.members[i];
        match (self.given, self.members.len()) {
            (true, 1) => format!("stage #{stage} (named explicitly)"),
            (false, 1) => format!("stage #{stage} (named after its type)"),
            (true, _) => format!(
                "stage #{stage} (instance {i} of the group named `{}`)",
                self.base
            ),
            (false, _) => {
                format!("stage #{stage} (instance {i} of a group named after its type)")
            }
        }
    }
}

/// The first of `base`, `base#2`, `base#3`, … that is `free`: how a stage whose name is taken is
/// told apart (`Tap`, `Tap#2`).
pub(crate) fn first_free(base: &str, free: impl Fn(&str) -> bool) -> String {
    first_free_from(base, 1, free).0
}

/// [`first_free`], trying from the suffix `from` on (1 is `base` alone); also returns the suffix
/// found. A caller whose taken names only grow resumes past the last suffix found for a base, so
/// that naming n stages after one type takes n tries, not n²/2.
fn first_free_from(base: &str, from: usize, free: impl Fn(&str) -> bool) -> (String, usize) {
    let mut suffix = from;
    loop {
        let name = if suffix == 1 {
            base.to_owned()
        } else {
            format!("{base}#{suffix}")
        };
        if free(&name) {
            return (name, suffix);
        }
        suffix += 1;
    }
}

/// The final name of each stage, given each one's base name and how it got it, in the order the
/// stages were added; see the module docs for the scheme.
///
/// # Errors
///
/// [`PipelineError::DuplicateName`] when a given name is also another stage's name.
pub(crate) fn unique_names(stages: &[(&str, Naming)]) -> Result<Vec<String>, PipelineError> {
    // One node per ungrouped stage and per group.
    let mut nodes: Vec<Node<'_>> = Vec::new();
    let mut groups: HashMap<(usize, &str, bool), usize> = HashMap::new();
    for (index, &(base, naming)) in stages.iter().enumerate() {
        let grouped = naming
            .group
            .and_then(|group| groups.get(&(group, base, naming.given)).copied());
        match grouped {
            Some(node) => nodes[node].members.push(index),
            None => {
                if let Some(group) = naming.group {
                    groups.insert((group, base, naming.given), nodes.len());
                }
                nodes.push(Node {
                    base,
                    given: naming.given,
                    members: vec![index],
                });
            }
        }
    }

    let mut names: Vec<String> = stages.iter().map(|(base, _)| (*base).to_owned()).collect();
    // Every name handed out, with the node and member that has it.
    let mut taken: HashMap<String, (usize, usize)> = HashMap::new();
    let duplicate = |name: &str, a: (usize, usize), b: (usize, usize)| {
        let (first, second) = if nodes[a.0].members[a.1] <= nodes[b.0].members[b.1] {
            (a, b)
        } else {
            (b, a)
        };
        PipelineError::DuplicateName {
            name: name.to_owned(),
            stages: [
                nodes[first.0].describe(first.1),
                nodes[second.0].describe(second.1),
            ],
        }
    };

    // Given names first: each must be free.
    for (n, node) in nodes.iter().enumerate().filter(|(_, node)| node.given) {
        for (i, name) in node.names(node.base).into_iter().enumerate() {
            if let Some(&owner) = taken.get(&name) {
                return Err(duplicate(&name, owner, (n, i)));
            }
            names[node.members[i]] = name.clone();
            taken.insert(name, (n, i));
        }
    }

    // Then generated ones: a given name in the way is an error, a generated one a suffix.
    let mut bases: HashSet<String> = HashSet::new();
    // The suffix to try first for each type's name and number of instances (see
    // `first_free_from`): whether a suffix is free depends on both.
    let mut next_suffix: HashMap<(&str, usize), usize> = HashMap::new();
    for (n, node) in nodes.iter().enumerate().filter(|(_, node)| !node.given) {
        for (i, name) in node.names(node.base).iter().enumerate() {
            if let Some(&owner) = taken.get(name) {
                if nodes[owner.0].given {
                    return Err(duplicate(name, owner, (n, i)));
                }
            }
        }
        let free = |base: &str| {
            !bases.contains(base)
                && node
                    .names(base)
                    .iter()
                    .all(|name| !taken.contains_key(name))
        };
        let key = (node.base, node.members.len());
        let from = next_suffix.get(&key).copied().unwrap_or(1);
        let (base, suffix) = first_free_from(node.base, from, free);
        next_suffix.insert(key, suffix + 1);
        for (i, name) in node.names(&base).into_iter().enumerate() {
            names[node.members[i]] = name.clone();
            taken.insert(name, (n, i));
        }
        bases.insert(base);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE: Naming = Naming {
        given: false,
        group: None,
    };
    const GIVEN: Naming = Naming {
        given: true,
        group: None,
    };

    fn in_group(naming: Naming, group: usize) -> Naming {
        Naming {
            group: Some(group),
            ..naming
        }
    }

    fn names(stages: &[(&str, Naming)]) -> Vec<String> {
        unique_names(stages).unwrap_or_else(|error| panic!("{stages:?}: {error}"))
    }

    fn error(stages: &[(&str, Naming)]) -> String {
        match unique_names(stages) {
            Ok(names) => panic!("{stages:?}: expected an error, got {names:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn distinct_names_are_kept() {
        assert_eq!(
            names(&[("numbers", GIVEN), ("Evens", TYPE), ("Printer", TYPE)]),
            ["numbers", "Evens", "Printer"]
        );
        assert_eq!(names(&[]), Vec::<String>::new());
    }

    #[test]
    fn the_instances_of_a_group_are_indexed() {
        let group = in_group(TYPE, 1);
        assert_eq!(
            names(&[("from_iter", TYPE), ("Printer", group), ("Printer", group)]),
            ["from_iter", "Printer[0]", "Printer[1]"]
        );
        let named = in_group(GIVEN, 0);
        assert_eq!(
            names(&[
                ("printers", named),
                ("printers", named),
                ("printers", named)
            ]),
            ["printers[0]", "printers[1]", "printers[2]"]
        );
        // A group of one instance is named like a single stage.
        assert_eq!(names(&[("Printer", in_group(TYPE, 0))]), ["Printer"]);
    }

    #[test]
    fn generated_names_that_collide_get_a_suffix() {
        assert_eq!(
            names(&[
                ("Tap", TYPE),
                ("Counter", TYPE),
                ("Tap", TYPE),
                ("Tap", TYPE)
            ]),
            ["Tap", "Counter", "Tap#2", "Tap#3"]
        );
        // Two unnamed groups of one type, and a single stage of it: each its own base.
        let (a, b) = (in_group(TYPE, 0), in_group(TYPE, 2));
        assert_eq!(
            names(&[
                ("Tap", a),
                ("Tap", a),
                ("Tap", b),
                ("Tap", b),
                ("Tap", TYPE)
            ]),
            ["Tap[0]", "Tap[1]", "Tap#2[0]", "Tap#2[1]", "Tap#3"]
        );
    }

    #[test]
    fn a_suffix_skips_names_that_are_taken() {
        assert_eq!(
            names(&[("Tap", TYPE), ("Tap#2", GIVEN), ("Tap", TYPE)]),
            ["Tap", "Tap#2", "Tap#3"]
        );
    }

    #[test]
    fn suffixes_resume_past_the_last_one_found_for_a_type() {
        // `Tap#3` is taken by a single stage, not by a group of two: `Tap#3[0]` and `Tap#3[1]` are
        // free, and the group, searching from the start, takes them.
        let group = in_group(TYPE, 5);
        assert_eq!(
            names(&[
                ("Tap", TYPE),
                ("Tap#3", GIVEN),
                ("Tap", TYPE),
                ("Tap", TYPE),
                ("Tap", group),
                ("Tap", group),
                ("Tap", TYPE),
            ]),
            ["Tap", "Tap#3", "Tap#2", "Tap#4", "Tap#3[0]", "Tap#3[1]", "Tap#5"]
        );
    }

    #[test]
    fn a_given_name_may_share_a_base_with_a_group_without_colliding() {
        let group = in_group(TYPE, 1);
        assert_eq!(
            names(&[("Printer", GIVEN), ("Printer", group), ("Printer", group)]),
            ["Printer", "Printer[0]", "Printer[1]"]
        );
    }

    #[test]
    fn a_given_name_that_collides_is_an_error_naming_both_stages() {
        let group = in_group(TYPE, 0);
        assert_eq!(
            error(&[("Printer", group), ("Printer", group), ("Printer[0]", GIVEN)]),
            "two stages are named `Printer[0]`: stage #0 (instance 0 of a group named after its type) and stage #2 (named explicitly); a name given explicitly must differ from every other stage's name"
        );
        assert_eq!(
            error(&[("sink", GIVEN), ("numbers", GIVEN), ("sink", GIVEN)]),
            "two stages are named `sink`: stage #0 (named explicitly) and stage #2 (named explicitly); a name given explicitly must differ from every other stage's name"
        );
        // The generated name comes first here: the error still lists the stages in order.
        let message = error(&[("Collect", TYPE), ("Collect", GIVEN)]);
        assert!(
            message.starts_with("two stages are named `Collect`: stage #0 (named after its type) and stage #1 (named explicitly)"),
            "{message}"
        );
        let named = in_group(GIVEN, 1);
        let message = error(&[("p[1]", GIVEN), ("p", named), ("p", named)]);
        assert!(
            message.starts_with("two stages are named `p[1]`: stage #0 (named explicitly) and stage #2 (instance 1 of the group named `p`)"),
            "{message}"
        );
    }

    #[test]
    fn the_default_name_is_the_type_name_unless_the_stage_gives_one() {
        struct Printer<T>(T);
        let _ = Printer(());
        assert_eq!(type_name::<Printer<u64>>(), "Printer");
        assert_eq!(type_name::<u64>(), "u64");
        assert_eq!(
            stage_name::<Printer<u8>>(Some("p".to_owned()), Some("from_iter")),
            ("p".to_owned(), GIVEN)
        );
        assert_eq!(
            stage_name::<Printer<u8>>(None, None),
            ("Printer".to_owned(), TYPE)
        );
        assert_eq!(
            stage_name::<Printer<u8>>(None, Some("from_iter")),
            ("from_iter".to_owned(), TYPE)
        );
    }
}

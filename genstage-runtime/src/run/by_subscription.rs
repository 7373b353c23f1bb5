//! A map keyed by subscription, for the few subscriptions one stage has.

use crate::dispatcher::SubscriptionId;

/// Entries in insertion order, found by a linear scan: a stage has one entry per producer it consumes
/// or per consumer it feeds, and at that size a scan beats hashing on the per-batch hot path.
pub(super) struct BySubscription<V> {
    entries: Vec<(SubscriptionId, V)>,
}

impl<V> BySubscription<V> {
    pub(super) fn new() -> Self {
        BySubscription {
            entries: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds or replaces the entry of `sub`.
    pub(super) fn insert(&mut self, sub: SubscriptionId, value: V) {
        match self.get_mut(sub) {
            Some(slot) => *slot = value,
            None => self.entries.push((sub, value)),
        }
    }

    pub(super) fn get(&self, sub: SubscriptionId) -> Option<&V> {
        self.entries
            .iter()
            .find(|(key, _)| *key == sub)
            .map(|(_, value)| value)
    }

    pub(super) fn get_mut(&mut self, sub: SubscriptionId) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(key, _)| *key == sub)
            .map(|(_, value)| value)
    }

    /// Every entry, in insertion order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (SubscriptionId, &V)> {
        self.entries.iter().map(|(key, value)| (*key, value))
    }

    pub(super) fn remove(&mut self, sub: SubscriptionId) -> Option<V> {
        let at = self.entries.iter().position(|(key, _)| *key == sub)?;
        Some(self.entries.remove(at).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_replace_remove() {
        let mut map = BySubscription::new();
        assert!(map.is_empty());
        map.insert(7, "a");
        map.insert(3, "b");
        map.insert(7, "c");
        assert_eq!(map.get(7), Some(&"c"));
        assert_eq!(map.get(3), Some(&"b"));
        assert_eq!(map.get(5), None);
        if let Some(value) = map.get_mut(3) {
            *value = "d";
        }
        assert_eq!(map.remove(3), Some("d"));
        assert_eq!(map.remove(3), None);
        assert_eq!(map.remove(7), Some("c"));
        assert!(map.is_empty());
    }
}

//! Maps keyed by [`SubscriptionId`], as every stage loop keeps them: looked up on every message.
//!
//! Subscription ids are small integers handed out by the pipeline, not input from outside, so the
//! DoS-resistant SipHash of `std`'s default hasher buys nothing; it was a tenth of the instructions of
//! a three-stage pipeline. One multiplication by a large odd constant (Fibonacci hashing) spreads
//! consecutive ids over both the low bits (the bucket) and the high bits (the control tag).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::dispatcher::SubscriptionId;

/// A `HashMap` keyed by subscription id, with a hasher made for such ids.
pub(super) type SubMap<V> = HashMap<SubscriptionId, V, BuildHasherDefault<SubscriptionHasher>>;

/// Hashes one `u64` by a multiplication; any other input is folded in byte by byte.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SubscriptionHasher(u64);

/// 2^64 divided by the golden ratio, rounded to odd.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for SubscriptionHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(SPREAD);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(SPREAD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_differ_in_low_and_high_bits() {
        let hash = |id: u64| {
            let mut hasher = SubscriptionHasher::default();
            hasher.write_u64(id);
            hasher.finish()
        };
        let low: std::collections::HashSet<u64> = (0..64).map(|id| hash(id) & 63).collect();
        let high: std::collections::HashSet<u64> = (0..64).map(|id| hash(id) >> 57).collect();
        assert!(low.len() > 32, "low bits spread: {}", low.len());
        assert!(high.len() > 32, "high bits spread: {}", high.len());
    }

    #[test]
    fn map_finds_what_it_holds() {
        let mut map = SubMap::default();
        for id in 0..1000u64 {
            map.insert(id * 7, id);
        }
        assert!((0..1000u64).all(|id| map.get(&(id * 7)) == Some(&id)));
        assert_eq!(map.get(&1), None);
    }
}

//! Duplicates answered from memory (issue 14): a provider resending a
//! notification whose original was delivered gets its `1|OK` without a
//! trip through the store's writer. An entry is made only after the store
//! itself answered "duplicate of a delivered callback, no conflicting
//! field", and it is believed only for the same dedup key with exactly the
//! same conflict fields, until the earliest of: the original's dedup window
//! or retention ends, or `TTL` passes (so that what another instance does to
//! the original — a replay that ends dead, which a resend would requeue —
//! is seen within a minute). Anything else goes to the store as before.

use std::collections::HashMap;
use std::sync::Mutex;

/// At most this long between the store's word and the last answer from it.
pub const TTL_MS: i64 = 60_000;
/// Entries kept; beyond it the expired ones go, then all.
const CAPACITY: usize = 65_536;

struct Entry {
    /// The conflict fields' values of the duplicate the store judged.
    fingerprint: String,
    expires_ms: i64,
}

#[derive(Default)]
pub struct Recent {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Recent {
    /// Is `key` (provider and tenant-scoped dedup key) a known duplicate of a
    /// delivered callback with these conflict fields, at `now_ms`?
    pub fn delivered_duplicate(&self, key: &str, fingerprint: &str, now_ms: i64) -> bool {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(key).is_some_and(|e| e.expires_ms > now_ms && e.fingerprint == fingerprint)
    }

    /// Notes what the store said, believed until `expires_ms`.
    pub fn remember(&self, key: String, fingerprint: String, expires_ms: i64, now_ms: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.expires_ms > now_ms);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, Entry { fingerprint, expires_ms: expires_ms.min(now_ms + TTL_MS) });
    }

    /// After a replay, nothing here is believed any more.
    pub fn forget_all(&self) {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn believed_only_for_the_same_fields_until_the_earliest_expiry() {
        let recent = Recent::default();
        recent.remember("k".into(), "500".into(), 10_000, 0);
        assert!(recent.delivered_duplicate("k", "500", 9_999));
        assert!(!recent.delivered_duplicate("k", "500", 10_000), "the original's window ended");
        assert!(!recent.delivered_duplicate("k", "1", 1), "another amount goes to the store");
        assert!(!recent.delivered_duplicate("other", "500", 1));
        recent.remember("k".into(), "500".into(), i64::MAX, 0);
        assert!(!recent.delivered_duplicate("k", "500", TTL_MS), "at most TTL after the store said so");
        recent.forget_all();
        assert!(!recent.delivered_duplicate("k", "500", 1));
    }
}

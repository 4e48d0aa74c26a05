//! DPoP nonces (RFC 9449 §8, §9): the last one each origin sent, in a
//! bounded table the hot path reads without a lock. Servers send a new
//! nonce now and then (`DPoP-Nonce` on any response); writes are rare, so a
//! copy-on-write table is cheaper than a lock for every request.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// How many origins are remembered; the oldest is forgotten first. As in
/// panva's oauth4webapi: a client talks to a handful of servers.
const MAX_ORIGINS: usize = 100;

/// The latest nonce of each origin.
#[derive(Default)]
pub(crate) struct NonceCache {
    table: ArcSwap<Vec<(Arc<str>, Arc<str>)>>,
}

impl std::fmt::Debug for NonceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCache")
            .field("origins", &self.table.load().len())
            .finish()
    }
}

impl NonceCache {
    /// The nonce `origin` last sent.
    pub(crate) fn get(&self, origin: &str) -> Option<Arc<str>> {
        let table = self.table.load();
        table
            .iter()
            .find(|(o, _)| &**o == origin)
            .map(|(_, nonce)| nonce.clone())
    }

    /// Remembers `nonce` for `origin`; nothing is written when it is the one
    /// already known. A value that is not a valid nonce (RFC 9449 §8.1:
    /// `NQCHAR`s, printable ASCII without `"` and `\`) is ignored, so a
    /// hostile server cannot make us put junk into every proof.
    pub(crate) fn note(&self, origin: &str, nonce: &str) {
        if !is_nonce(nonce) || self.get(origin).as_deref() == Some(nonce) {
            return;
        }
        let nonce: Arc<str> = Arc::from(nonce);
        let origin: Arc<str> = Arc::from(origin);
        self.table.rcu(|table| {
            let mut next: Vec<_> = table
                .iter()
                .filter(|(o, _)| *o != origin)
                .cloned()
                .collect();
            if next.len() >= MAX_ORIGINS {
                next.remove(0);
            }
            next.push((origin.clone(), nonce.clone()));
            next
        });
    }
}

/// RFC 9449 §8.1: `nonce = 1*NQCHAR`, `NQCHAR = %x21 / %x23-5B / %x5D-7E`;
/// capped in length, since it goes into every proof.
fn is_nonce(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 512
        && value
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_nonce_per_origin_wins_and_junk_is_ignored() {
        let cache = NonceCache::default();
        assert_eq!(cache.get("https://a"), None);
        cache.note("https://a", "n1");
        cache.note("https://b", "m1");
        cache.note("https://a", "n2");
        assert_eq!(cache.get("https://a").as_deref(), Some("n2"));
        assert_eq!(cache.get("https://b").as_deref(), Some("m1"));
        cache.note("https://a", "bad \"nonce\"");
        cache.note("https://a", "");
        cache.note("https://a", &"x".repeat(513));
        assert_eq!(cache.get("https://a").as_deref(), Some("n2"));
    }

    #[test]
    fn the_table_is_bounded() {
        let cache = NonceCache::default();
        for i in 0..(MAX_ORIGINS + 20) {
            cache.note(&format!("https://host-{i}"), "n");
        }
        assert_eq!(cache.table.load().len(), MAX_ORIGINS);
        assert_eq!(cache.get("https://host-0"), None, "the oldest went first");
        assert!(
            cache
                .get(&format!("https://host-{}", MAX_ORIGINS + 19))
                .is_some()
        );
    }
}

//! The names of the store's keys, and the hash tag that puts them in one
//! cluster slot.

/// The store's keys. The lock's companions (the waiter queue, each
/// waiter's wake list) extend the lock key's name, so they share its hash
/// slot whenever it has a hash tag.
#[derive(Clone)]
pub(super) struct Keys {
    pub(super) data: String,
    pub(super) lock: String,
    pub(super) queue: String,
    pub(super) wake_prefix: String,
}

impl Keys {
    pub(super) fn new(key: &str) -> Self {
        let lock = format!("{key}:lock");
        Self {
            data: key.to_owned(),
            queue: format!("{lock}:queue"),
            wake_prefix: format!("{lock}:wake:"),
            lock,
        }
    }
}

/// `key` with a hash tag: itself if it has one (`{app}:tokens`), else
/// `{key}`. Every key the store derives from it then hashes to one slot.
#[cfg(any(feature = "redis-cluster", test))]
pub(super) fn with_hash_tag(key: &str) -> String {
    let tagged = key
        .find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0);
    if tagged {
        key.to_owned()
    } else {
        format!("{{{key}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_without_a_hash_tag_get_one() {
        assert_eq!(with_hash_tag("app:tokens"), "{app:tokens}");
        assert_eq!(with_hash_tag("{app}:tokens"), "{app}:tokens");
        assert_eq!(with_hash_tag("x{app}y"), "x{app}y");
        // An empty tag does not count: Redis hashes the whole name then.
        assert_eq!(with_hash_tag("{}app"), "{{}app}");
        assert_eq!(with_hash_tag("app{"), "{app{}");
    }

    #[test]
    fn the_lock_companions_extend_the_lock_key() {
        let keys = Keys::new("{app}:tokens");
        assert_eq!(keys.lock, "{app}:tokens:lock");
        assert_eq!(keys.queue, "{app}:tokens:lock:queue");
        assert_eq!(keys.wake_prefix, "{app}:tokens:lock:wake:");
    }
}

//! Property tests of what a `DPoP-Nonce` header may put into the cache (and
//! so into every proof): any text is stored exactly when it is an RFC 9449
//! §8.1 nonce of bounded length, and what is stored is what was sent.

use proptest::prelude::*;

use super::*;
use crate::endpoint::response::proptests::strategies::config;

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn only_valid_nonces_are_kept_and_they_are_kept_exactly(
        text in prop_oneof![any::<String>(), "[!-~]{0,600}", "[#-\\[\\]-~]{1,64}"],
    ) {
        let cache = NonceCache::default();
        cache.note("https://api.example", "before");
        cache.note("https://api.example", &text);
        let kept = cache.get("https://api.example");
        if is_nonce(&text) {
            prop_assert_eq!(kept.as_deref(), Some(text.as_str()));
            prop_assert!(text.len() <= 512 && !text.contains(['"', '\\', ' ']));
        } else {
            prop_assert_eq!(kept.as_deref(), Some("before"), "junk never replaces a nonce");
        }
    }

    #[test]
    fn the_table_stays_bounded_whatever_the_origins(
        origins in proptest::collection::vec("[a-z]{1,12}", 0..300),
    ) {
        let cache = NonceCache::default();
        for origin in &origins {
            cache.note(&format!("https://{origin}"), "n");
        }
        prop_assert!(cache.table.load().len() <= MAX_ORIGINS);
    }
}

//! When a set is fresh, due, expired or worth adopting.

use super::*;

fn published_at(issued: SystemTime, lifetime: u64, jitter: Option<f64>) -> Current {
    let tokens = TokenSet::new("a")
        .with_expires_in(Duration::from_secs(lifetime))
        .with_issued_at(issued);
    let at = refresh_at(&tokens, Duration::from_secs(60), jitter);
    Current::new(Generation(1), tokens, at, true, Issued::Unknown, None).unwrap()
}

#[test]
fn leeway_is_capped_at_half_the_lifetime() {
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let current = published_at(issued, 10, None);
    assert!(current.is_fresh(issued + Duration::from_millis(4999)));
    assert!(!current.is_fresh(issued + Duration::from_secs(5)));
    assert!(!current.is_expired(issued + Duration::from_secs(9)));
    assert!(current.is_expired(issued + Duration::from_secs(10)));

    let current = published_at(issued, 3600, None);
    assert!(current.is_fresh(issued + Duration::from_secs(3539)));
    assert!(!current.is_fresh(issued + Duration::from_secs(3540)));
}

#[test]
fn jitter_moves_the_refresh_point_only_within_the_margin() {
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    // The extremes of the injected fraction: 60 s and 45 s before expiry.
    let earliest = published_at(issued, 3600, Some(0.999_999));
    assert!(earliest.is_fresh(issued + Duration::from_secs(3539)));
    assert!(!earliest.is_fresh(issued + Duration::from_secs(3541)));
    let latest = published_at(issued, 3600, Some(0.0));
    assert!(latest.is_fresh(issued + Duration::from_secs(3554)));
    assert!(!latest.is_fresh(issued + Duration::from_secs(3555)));
}

#[test]
fn token_without_expiry_is_always_fresh() {
    let tokens = TokenSet::new("a");
    let current = Current::new(Generation(1), tokens, None, true, Issued::Unknown, None).unwrap();
    assert!(current.is_fresh(SystemTime::now() + Duration::from_secs(10 * 365 * 86400)));
}

#[test]
fn a_huge_lifetime_has_no_refresh_point_and_never_overflows() {
    let tokens = TokenSet::new("a").with_expires_in(Duration::MAX);
    assert_eq!(refresh_at(&tokens, Duration::MAX, Some(0.5)), None);
}

#[test]
fn a_peer_set_is_adopted_only_with_more_than_a_second_to_live() {
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let set = |lifetime| {
        TokenSet::new("a")
            .with_expires_in(lifetime)
            .with_issued_at(issued)
    };
    let hour = set(Duration::from_secs(3600));
    assert!(is_adoptable(
        &hour,
        issued + Duration::from_millis(3_598_999)
    ));
    assert!(!is_adoptable(&hour, issued + Duration::from_secs(3599)));
    // Two-second tokens: half their life, the server's rounding at most.
    let short = set(Duration::from_secs(2));
    assert!(is_adoptable(&short, issued + Duration::from_millis(999)));
    assert!(!is_adoptable(&short, issued + Duration::from_secs(1)));
    let blink = set(Duration::from_millis(400));
    assert!(is_adoptable(&blink, issued + Duration::from_millis(199)));
    assert!(!is_adoptable(&blink, issued + Duration::from_millis(200)));
    assert!(!is_adoptable(&set(Duration::ZERO), issued));
    assert!(is_adoptable(&TokenSet::new("a"), SystemTime::now()));
    assert!(is_adoptable(&set(Duration::MAX), issued));
}

#[test]
fn generations_saturate() {
    assert_eq!(Generation(u64::MAX).next(), Generation(u64::MAX));
    assert_eq!(Generation::NONE.next().get(), 1);
}

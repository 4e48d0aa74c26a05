//! Property tests of `Retry-After`: delay-seconds round-trip, HTTP-dates and
//! anything else give no delay (the caller's backoff then), nothing panics.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use reqwest::header::HeaderValue;

use super::parse_retry_after;
use crate::endpoint::response::proptests::strategies::config;

/// An RFC 9110 §5.6.7 IMF-fixdate, as servers send them.
fn http_date(seconds: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, time) = (seconds / 86_400, seconds % 86_400);
    // Civil from days (Howard Hinnant's algorithm), for years 1970..9999.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn retry_after_seconds_round_trip(seconds in any::<u64>(), pad in "[ \t]{0,3}") {
        let value = HeaderValue::from_str(&format!("{pad}{seconds}{pad}")).unwrap();
        prop_assert_eq!(parse_retry_after(Some(&value)), Some(Duration::from_secs(seconds)));
    }

    /// An HTTP-date is not read (the backoff applies): never a delay made
    /// of its digits.
    #[test]
    fn retry_after_http_dates_give_no_delay(seconds in 0u64..253_402_300_800) {
        let date = http_date(seconds);
        let value = HeaderValue::from_str(&date).unwrap();
        prop_assert_eq!(parse_retry_after(Some(&value)), None, "{}", date);
    }

    /// Any header value: a delay only for what is exactly a decimal number
    /// of seconds (with an optional `+`, as `u64::from_str` takes).
    #[test]
    fn retry_after_of_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let text = std::str::from_utf8(&bytes).ok().map(str::trim);
        let expected = text.and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
        prop_assert_eq!(parse_retry_after(Some(&value)), expected);
    }
}

#[test]
fn http_dates_are_the_real_calendar() {
    assert_eq!(http_date(1_445_412_480), "Wed, 21 Oct 2015 07:28:00 GMT");
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
    let seconds = leap
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(http_date(seconds), "Tue, 29 Feb 2000 00:00:00 GMT");
}

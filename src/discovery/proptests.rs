//! Property tests of discovery documents: any bytes and any JSON are
//! metadata or `InvalidResponse`; a generated document reads as what it
//! said, whatever else it holds; what reads builds a manager or a typed
//! error; the well-known URLs of any https issuer stay on its origin.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};

use super::*;
use crate::endpoint::response::proptests::strategies::*;

fn url() -> Url {
    Url::parse("https://sso.example.com/.well-known/openid-configuration").unwrap()
}

fn strings() -> impl Strategy<Value = Option<Vec<String>>> {
    option::of(vec(nasty_text(), 0..4))
}

fn metadata() -> impl Strategy<Value = ServerMetadata> {
    (
        nasty_text(),
        prop_oneof![nasty_text(), "https://[a-z]{1,10}\\.example/[a-z/]{0,12}"],
        option::of(nasty_text()),
        strings(),
        strings(),
        strings(),
    )
        .prop_map(
            |(issuer, token, revocation, auth, grants, scopes)| ServerMetadata {
                issuer,
                token_endpoint: token,
                revocation_endpoint: revocation,
                token_endpoint_auth_methods_supported: auth,
                grant_types_supported: grants,
                scopes_supported: scopes,
            },
        )
}

/// `metadata` as a server would write it, absent fields left out, with
/// the fields of others beside them.
fn document(metadata: &ServerMetadata, others: Map<String, Value>) -> Map<String, Value> {
    let mut map = others;
    map.insert("issuer".into(), metadata.issuer.clone().into());
    map.insert(
        "token_endpoint".into(),
        metadata.token_endpoint.clone().into(),
    );
    let optional = [
        (
            "revocation_endpoint",
            metadata.revocation_endpoint.clone().map(Value::from),
        ),
        (
            "token_endpoint_auth_methods_supported",
            metadata
                .token_endpoint_auth_methods_supported
                .clone()
                .map(Value::from),
        ),
        (
            "grant_types_supported",
            metadata.grant_types_supported.clone().map(Value::from),
        ),
        (
            "scopes_supported",
            metadata.scopes_supported.clone().map(Value::from),
        ),
    ];
    for (name, value) in optional {
        match value {
            Some(value) => map.insert(name.into(), value),
            None => map.remove(name),
        };
    }
    map
}

fn others() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z_]{1,30}", json_value(), 0..6)
        .prop_map(|map| map.into_iter().collect())
}

fn check(body: &[u8]) -> Result<Option<ServerMetadata>, TestCaseError> {
    match parse_document(body, &url()) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(Error::InvalidResponse { reason, .. }) => {
            prop_assert!(!reason.chars().any(char::is_control));
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!("not InvalidResponse: {other}"))),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn discovery_document_of_any_bytes(bytes in vec(any::<u8>(), 0..256)) {
        check(&bytes)?;
    }

    #[test]
    fn discovery_document_of_any_json(value in json_value()) {
        check(&serde_json::to_vec(&value).unwrap())?;
    }

    /// A generated document reads as exactly what it said, and one with a
    /// field of the wrong type is refused or still reads the rest right.
    #[test]
    fn discovery_document_reads_as_generated(
        metadata in metadata(),
        others in others(),
        changes in vec((prop::sample::select(vec![
            "issuer", "token_endpoint", "revocation_endpoint",
            "token_endpoint_auth_methods_supported", "grant_types_supported", "scopes_supported",
        ]), wrong_value()), 0..2),
    ) {
        let mut map = document(&metadata, others);
        let body = serde_json::to_vec(&map).unwrap();
        prop_assert_eq!(check(&body)?, Some(metadata.clone()));
        for (name, value) in &changes {
            map.insert((*name).to_owned(), value.clone());
        }
        let mutated = serde_json::to_vec(&map).unwrap();
        if let Some(read) = check(&mutated)? {
            prop_assert_eq!(Some(read.issuer.as_str()), map["issuer"].as_str());
            prop_assert_eq!(Some(read.token_endpoint.as_str()), map["token_endpoint"].as_str());
        }
    }

    #[test]
    fn discovery_document_edited(metadata in metadata(), edits in edits()) {
        let body = serde_json::to_vec(&document(&metadata, Map::new())).unwrap();
        check(&apply(body, &edits))?;
    }

    /// The well-known URLs of any https issuer stay on its origin.
    #[test]
    fn discovery_urls_of_any_issuer(host in "[a-z0-9.-]{1,20}", path in "[ -~]{0,40}") {
        let Ok(issuer) = Url::parse(&format!("https://{host}/{path}")) else { return Ok(()) };
        for candidate in well_known_urls(&issuer) {
            prop_assert_eq!(candidate.origin(), issuer.origin());
            prop_assert!(candidate.path().contains("/.well-known/"));
        }
    }
}

proptest! {
    // Each case builds an HTTP client: fewer cases.
    #![proptest_config(config(32))]

    /// What reads builds a manager, or says why not.
    #[test]
    fn discovery_metadata_builds_or_says_why(metadata in metadata()) {
        let _ = builder_from(&metadata).client_id("app").build();
    }
}

/// The largest document read (256 KiB), in shapes that cost the most,
/// takes a bounded time.
#[test]
fn the_largest_documents_finish_quickly() {
    let long = "x".repeat(MAX_METADATA_BYTES - 64);
    for body in [
        deep_json(MAX_METADATA_BYTES / 2),
        format!(r#"{{"issuer":"{long}","token_endpoint":"t"}}"#),
        format!(
            r#"{{"issuer":"i","token_endpoint":"t","scopes_supported":[{}""]}}"#,
            "\"\",".repeat(MAX_METADATA_BYTES / 3 - 40)
        ),
    ] {
        let started = std::time::Instant::now();
        let _ = check(body.as_bytes());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

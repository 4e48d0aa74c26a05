//! The builder's checks and the manager's `Debug`.

use super::*;
use crate::ClientAuth;

/// What other modules' tests check of a built manager.
impl TokenManager {
    pub(crate) fn token_url(&self) -> &Url {
        self.inner.endpoint.url()
    }

    pub(crate) fn client_auth(&self) -> ClientAuth {
        self.inner.endpoint.client_auth()
    }
}

#[test]
fn builder_rejects_insecure_or_incomplete_configuration() {
    let err = TokenManager::builder("http://auth.example.com/token")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = TokenManager::builder("https://auth.example.com/token")
        .client_secret("s")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = TokenManager::builder("https://auth.example.com/token")
        .client_id("id")
        .client_secret("s")
        .client_auth(ClientAuth::None)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = TokenManager::builder("https://auth.example.com/token")
        .store_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(
        TokenManager::builder("http://127.0.0.1:8080/token")
            .build()
            .is_ok()
    );
}

#[test]
fn every_duration_up_to_the_maximum_builds() {
    let manager = TokenManager::builder("https://auth.example.com/token")
        .leeway(Duration::MAX)
        .refresh_timeout(Duration::MAX)
        .attempt_timeout(Duration::MAX)
        .retry_base_delay(Duration::MAX)
        .failure_cooldown(Duration::MAX)
        .store_timeout(Duration::MAX)
        .build();
    assert!(manager.is_ok(), "{manager:?}");
}

#[test]
fn a_token_url_with_credentials_is_refused_and_never_printed() {
    let builder = TokenManager::builder("https://client:hunter2@as.example/token");
    let printed = format!("{builder:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    let err = builder.build().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = TokenManager::builder("https://as.example/token")
        .revocation_url("https://client:hunter2@as.example/revoke")
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn debug_shows_no_secret() {
    let builder = TokenManager::builder("https://auth.example.com/token")
        .client_id("id")
        .client_secret("very-secret-value")
        .initial_tokens(TokenSet::new("access-secret").with_refresh_token("refresh-secret"));
    let printed = format!("{builder:?}");
    assert!(!printed.contains("very-secret-value"), "{printed}");
    assert!(!printed.contains("access-secret"), "{printed}");
    assert!(!printed.contains("refresh-secret"), "{printed}");
    let manager = builder.build().unwrap();
    let printed = format!("{manager:?}");
    assert!(!printed.contains("very-secret-value"), "{printed}");
    assert!(printed.contains("client_auth: SecretBasic"), "{printed}");
}

#[test]
fn without_a_runtime_loading_is_an_error_not_a_panic() {
    let manager = TokenManager::builder("https://auth.example.com/token")
        .initial_tokens(TokenSet::new("a").with_refresh_token("r"))
        .build()
        .unwrap();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut tokens = std::pin::pin!(manager.load_tokens());
    match tokens.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(Error::Config(message))) => {
            assert!(message.contains("Tokio runtime"), "{message}");
        }
        other => panic!("expected a clear error, got {other:?}"),
    }
}

#[tokio::test]
#[allow(deprecated)]
async fn the_old_names_still_work() {
    let manager = TokenManager::builder("https://auth.example.com/token")
        .tokens(TokenSet::new("a").with_refresh_token("r"))
        .build()
        .unwrap();
    assert!(manager.current_tokens().is_none());
    assert_eq!(manager.tokens().await.unwrap().access_token().secret(), "a");
    assert!(manager.current_tokens().is_some());
}

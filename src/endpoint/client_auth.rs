//! How the client authenticates to the token and revocation endpoints
//! (RFC 6749 §2.3): the one place that knows the methods, their defaults,
//! their validation, their form fields and the Basic header.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use super::assertion::{AssertionAudience, CLIENT_ASSERTION_TYPE, client_assertion};
use super::request::TokenRequest;
use crate::error::Error;
use crate::jose::Signer;

/// How the client authenticates to the token endpoint (RFC 6749 §2.3).
///
/// The default is [`ClientAuth::PrivateKeyJwt`] when a signer is set
/// ([`client_signer`](crate::TokenManagerBuilder::client_signer)), else
/// [`ClientAuth::SecretBasic`] when a client secret is set and
/// [`ClientAuth::None`] otherwise; discovery and presets may pick
/// [`ClientAuth::SecretPost`]. Name the method the client is registered
/// with when the server is strict about it:
///
/// ```
/// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
/// use reqwest_oauth2_refresh::{ClientAuth, TokenManager};
/// let manager = TokenManager::builder("https://auth.example.com/oauth/token")
///     .client_id("my-app")
///     .client_secret("…")
///     .client_auth(ClientAuth::SecretPost)
///     .build()?;
/// # let _ = manager; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A public client: sends only `client_id` in the form (if one is set).
    None,
    /// HTTP Basic with the form-urlencoded client id and secret
    /// (`client_secret_basic`).
    SecretBasic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    SecretPost,
    /// A JWT signed with the client's private key, new for every request
    /// (`private_key_jwt`, RFC 7523 §2.2, OIDC Core §9): what FAPI 2.0,
    /// Entra certificate credentials and Okta service apps use.
    PrivateKeyJwt,
}

impl ClientAuth {
    /// The default for a client with a secret when the server says nothing:
    /// RFC 6749 §2.3.1 makes Basic mandatory for servers; metadata that lists
    /// `client_secret_post` but not Basic means the body.
    pub(crate) fn default_for(supported: Option<&[String]>) -> ClientAuth {
        let supports = |method: &str| supported.is_none_or(|m| m.iter().any(|s| s == method));
        if !supports("client_secret_basic") && supports("client_secret_post") {
            ClientAuth::SecretPost
        } else {
            ClientAuth::SecretBasic
        }
    }
}

fn resolve_audience(
    audience: Option<AssertionAudience>,
    issuer: Option<String>,
) -> Result<Audience, Error> {
    match (audience, issuer) {
        (Some(AssertionAudience::Custom(audience)), _) => Ok(Audience::Fixed(audience)),
        (Some(AssertionAudience::Endpoint), _) => Ok(Audience::Endpoint),
        (Some(AssertionAudience::Issuer) | None, Some(issuer)) => Ok(Audience::Fixed(issuer)),
        (None, None) => Ok(Audience::Endpoint),
        (Some(AssertionAudience::Issuer), None) => Err(Error::Config(
            "the assertion audience is the issuer, but no issuer is known: \
             set it with .issuer(..) or use discovery"
                .into(),
        )),
    }
}

/// The client secret. `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct ClientSecret(Arc<str>);

impl ClientSecret {
    pub(crate) fn new(secret: String) -> Self {
        Self(Arc::from(secret))
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Who a client assertion is addressed to, resolved at build time.
#[derive(Debug, Clone)]
enum Audience {
    Fixed(String),
    /// The URL of each request.
    Endpoint,
}

/// A `private_key_jwt` client's key and audience.
#[derive(Debug, Clone)]
struct Assertions {
    signer: Arc<dyn Signer>,
    audience: Audience,
}

/// What the builder knows about the client, for [`ClientCredentials::resolve`].
pub(crate) struct ClientSettings {
    pub(crate) id: Option<String>,
    pub(crate) secret: Option<ClientSecret>,
    pub(crate) explicit: Option<ClientAuth>,
    /// The method for a client with a secret and no explicit one.
    pub(crate) default_with_secret: ClientAuth,
    pub(crate) signer: Option<Arc<dyn Signer>>,
    pub(crate) audience: Option<AssertionAudience>,
    pub(crate) issuer: Option<String>,
    /// The server's `token_endpoint_auth_methods_supported`, if known.
    pub(crate) supported: Option<Vec<String>>,
}

/// The client's identity and how it proves it, checked once at build time.
#[derive(Debug, Clone)]
pub(crate) struct ClientCredentials {
    id: Option<String>,
    secret: Option<ClientSecret>,
    method: ClientAuth,
    assertions: Option<Assertions>,
}

impl ClientCredentials {
    /// Picks the method (explicit; else `private_key_jwt` when a signer is
    /// set and the server does not rule it out or there is no secret; else
    /// the secret default; else a public client) and checks that it has
    /// what it needs.
    pub(crate) fn resolve(settings: ClientSettings) -> Result<Self, Error> {
        let ClientSettings {
            id, secret, signer, ..
        } = &settings;
        let server_takes_keys = settings
            .supported
            .as_ref()
            .is_none_or(|m| m.iter().any(|s| s == "private_key_jwt"));
        let method = match (settings.explicit, signer, secret) {
            (Some(method), _, _) => method,
            (None, Some(_), None) => ClientAuth::PrivateKeyJwt,
            (None, Some(_), Some(_)) if server_takes_keys => ClientAuth::PrivateKeyJwt,
            (None, _, Some(_)) => settings.default_with_secret,
            (None, None, None) => ClientAuth::None,
        };
        let refuse = |why: &str| Err(Error::Config(format!("{method:?}: {why}")));
        match method {
            ClientAuth::SecretBasic | ClientAuth::SecretPost
                if id.is_none() || secret.is_none() =>
            {
                return refuse("needs both a client_id and a client_secret");
            }
            ClientAuth::PrivateKeyJwt if id.is_none() || signer.is_none() => {
                return refuse("needs both a client_id and a client_signer");
            }
            // Chosen over a secret that the server would also take: the
            // secret stays unused. Named explicitly, it is a mistake.
            ClientAuth::None | ClientAuth::PrivateKeyJwt
                if secret.is_some() && settings.explicit.is_some() =>
            {
                return refuse("a client_secret is set but this method sends none");
            }
            _ => {}
        }
        let assertions = match (method, settings.signer) {
            (ClientAuth::PrivateKeyJwt, Some(signer)) => Some(Assertions {
                signer,
                audience: resolve_audience(settings.audience, settings.issuer)?,
            }),
            _ => None,
        };
        Ok(Self {
            id: settings.id,
            secret: settings.secret,
            method,
            assertions,
        })
    }

    pub(crate) fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub(crate) fn method(&self) -> ClientAuth {
        self.method
    }

    /// Authenticates one request: a new signed assertion for
    /// `private_key_jwt`, form fields for `client_secret_post` and public
    /// clients, the Basic header for `client_secret_basic`.
    pub(crate) async fn apply(
        &self,
        request: &mut TokenRequest,
        now: SystemTime,
    ) -> Result<(), Error> {
        let Some(assertions) = &self.assertions else {
            self.apply_secret(request);
            return Ok(());
        };
        let id = self.id.as_deref().unwrap_or_default();
        let audience = match &assertions.audience {
            Audience::Fixed(audience) => audience.as_str(),
            Audience::Endpoint => request.url.as_str(),
        };
        let jwt = client_assertion(assertions.signer.as_ref(), id, audience, now).await?;
        request.field("client_id", id);
        request.field("client_assertion_type", CLIENT_ASSERTION_TYPE);
        request.secret_field("client_assertion", &jwt);
        Ok(())
    }

    /// The methods without a signature.
    fn apply_secret(&self, request: &mut TokenRequest) {
        match self.method {
            ClientAuth::SecretPost => {
                if let Some(id) = &self.id {
                    request.field("client_id", id);
                }
                if let Some(secret) = &self.secret {
                    request.secret_field("client_secret", &secret.0);
                }
            }
            ClientAuth::None | ClientAuth::PrivateKeyJwt => {
                if let Some(id) = &self.id {
                    request.field("client_id", id);
                }
            }
            ClientAuth::SecretBasic => {
                if let Some(basic) = self.basic_header() {
                    request.headers.insert(AUTHORIZATION, basic);
                }
                if let Some(secret) = &self.secret {
                    request.carries_secret(&secret.0);
                }
            }
        }
    }

    /// `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1
    /// encodes both parts with application/x-www-form-urlencoded first, which
    /// matters for secrets with reserved characters.
    fn basic_header(&self) -> Option<HeaderValue> {
        let id = self.id.as_deref().unwrap_or("");
        let secret = self.secret.as_ref().map(|s| &*s.0).unwrap_or("");
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let raw = format!("{}:{}", encode(id), encode(secret));
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut value = HeaderValue::try_from(format!("Basic {encoded}")).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use reqwest::Url;

    use super::*;

    fn credentials(
        method: Option<ClientAuth>,
        secret: Option<&str>,
    ) -> Result<ClientCredentials, Error> {
        ClientCredentials::resolve(settings(Some("id"), method, secret))
    }

    fn settings(
        id: Option<&str>,
        method: Option<ClientAuth>,
        secret: Option<&str>,
    ) -> ClientSettings {
        ClientSettings {
            id: id.map(Into::into),
            secret: secret.map(|s| ClientSecret::new(s.into())),
            explicit: method,
            default_with_secret: ClientAuth::SecretBasic,
            signer: None,
            audience: None,
            issuer: None,
            supported: None,
        }
    }

    fn applied(credentials: &ClientCredentials) -> TokenRequest {
        let mut request = TokenRequest::new(Url::parse("https://as.example/token").unwrap());
        credentials.apply_secret(&mut request);
        request
    }

    #[test]
    fn defaults_follow_the_secret_and_the_servers_list() {
        assert_eq!(
            credentials(None, Some("s")).unwrap().method(),
            ClientAuth::SecretBasic
        );
        assert_eq!(credentials(None, None).unwrap().method(), ClientAuth::None);
        let post_only = ["client_secret_post".to_owned()];
        assert_eq!(
            ClientAuth::default_for(Some(&post_only)),
            ClientAuth::SecretPost
        );
        assert_eq!(ClientAuth::default_for(None), ClientAuth::SecretBasic);
    }

    #[test]
    fn methods_that_cannot_work_are_refused() {
        assert!(credentials(Some(ClientAuth::SecretPost), None).is_err());
        assert!(credentials(Some(ClientAuth::None), Some("s")).is_err());
        let no_id = ClientCredentials::resolve(settings(None, None, Some("s")));
        assert!(no_id.is_err());
    }

    #[test]
    fn basic_form_urlencodes_both_parts_and_is_sensitive() {
        let request = applied(&credentials(None, Some("a b:+")).unwrap());
        let header = request.headers.get(AUTHORIZATION).unwrap();
        assert!(header.is_sensitive());
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(raw, b"id:a+b%3A%2B");
        assert_eq!(request.body(), "");
    }

    #[test]
    fn post_and_public_clients_authenticate_in_the_body() {
        let post = applied(&credentials(Some(ClientAuth::SecretPost), Some("s")).unwrap());
        assert_eq!(post.body(), "client_id=id&client_secret=s");
        assert!(post.headers.get(AUTHORIZATION).is_none());
        let public = applied(&credentials(None, None).unwrap());
        assert_eq!(public.body(), "client_id=id");
    }

    #[test]
    fn debug_hides_the_secret() {
        let printed = format!("{:?}", credentials(None, Some("hunter2")).unwrap());
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}

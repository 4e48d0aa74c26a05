//! Configuring a [`TokenManager`](crate::TokenManager): every setting, checked once in
//! [`TokenManagerBuilder::build`].

use std::sync::Arc;
use std::time::Duration;

use super::GrantKind;
use super::events::Events;
use super::keys::KeySettings;
use crate::clock::{Clock, SystemClock};
use crate::endpoint::client_auth::{ClientAuth, ClientSecret};
use crate::endpoint::response::ResponsePolicy;
use crate::endpoint::retry::RetryPolicy;
use crate::store::TokenStore;
use crate::token::TokenSet;

/// How long before expiry a token is refreshed, at most (it is also capped at
/// half the token's lifetime).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The time budget of one refresh, retries included.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
/// The timeout of one request to the token endpoint.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a transient token-endpoint failure is retried.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// The first retry's delay; each further retry doubles it (with jitter).
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(250);
/// After a failed refresh, how long further callers get the same error
/// instead of another call to the token endpoint.
pub const DEFAULT_FAILURE_COOLDOWN: Duration = Duration::from_secs(5);
/// The largest token response that is read.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// How long after the token endpoint issued a token a 401 for it is handed
/// back instead of refreshing again
/// ([`TokenManagerBuilder::rejected_token_min_age`]).
pub const DEFAULT_REJECTED_TOKEN_MIN_AGE: Duration = Duration::from_secs(10);
/// The time a store gets to load or save
/// ([`TokenManagerBuilder::store_timeout`]).
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Configures a [`TokenManager`](crate::TokenManager); start with [`TokenManager::builder`](crate::TokenManager::builder).
pub struct TokenManagerBuilder {
    pub(super) token_url: String,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<ClientSecret>,
    pub(super) client_auth: Option<ClientAuth>,
    pub(super) scope: Option<String>,
    pub(super) extra_params: Vec<(String, String)>,
    pub(super) grant: GrantKind,
    pub(super) revocation_url: Option<String>,
    /// The method for a client with a secret and no explicit
    /// `client_auth`: from discovery or a provider preset.
    pub(super) default_secret_auth: ClientAuth,
    pub(super) tokens: Option<TokenSet>,
    pub(super) events: Events,
    pub(super) store: Option<Arc<dyn TokenStore>>,
    pub(super) http_client: Option<reqwest::Client>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) leeway: Duration,
    pub(super) refresh_mode: super::RefreshMode,
    pub(super) retry: RetryPolicy,
    pub(super) failure_cooldown: Duration,
    pub(super) max_response_bytes: usize,
    pub(super) store_timeout: Duration,
    pub(super) policy: ResponsePolicy,
    pub(super) rejected_token_min_age: Duration,
    pub(super) keys: KeySettings,
}

impl TokenManagerBuilder {
    pub(super) fn new(token_url: &str) -> Self {
        Self {
            token_url: token_url.to_owned(),
            client_id: None,
            client_secret: None,
            client_auth: None,
            scope: None,
            extra_params: Vec::new(),
            grant: GrantKind::RefreshToken,
            revocation_url: None,
            default_secret_auth: ClientAuth::SecretBasic,
            tokens: None,
            events: Events::default(),
            store: None,
            http_client: None,
            clock: Arc::new(SystemClock),
            leeway: DEFAULT_LEEWAY,
            refresh_mode: super::RefreshMode::default(),
            retry: RetryPolicy {
                attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
                budget: DEFAULT_REFRESH_TIMEOUT,
                max_retries: DEFAULT_MAX_RETRIES,
                base_delay: DEFAULT_RETRY_BASE_DELAY,
            },
            failure_cooldown: DEFAULT_FAILURE_COOLDOWN,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            policy: ResponsePolicy::default(),
            rejected_token_min_age: DEFAULT_REJECTED_TOKEN_MIN_AGE,
            keys: KeySettings::default(),
        }
    }

    /// The client identifier issued by the authorization server.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client secret, for a confidential client. Omit it for a public
    /// client. It never appears in `Debug` output or logs.
    pub fn client_secret(mut self, client_secret: impl Into<String>) -> Self {
        self.client_secret = Some(ClientSecret::new(client_secret.into()));
        self
    }

    /// How to authenticate to the token endpoint. Default:
    /// [`ClientAuth::SecretBasic`] with a secret, [`ClientAuth::None`] without.
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = Some(client_auth);
        self
    }

    /// The `scope` to ask for on each refresh (RFC 6749 §6). Omit it to keep
    /// the originally granted scope; some providers (Microsoft Entra ID for
    /// some resources) want it on every refresh.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// An extra form parameter for every refresh request, for providers that
    /// need one (an `audience`, a `resource`). Call once per parameter.
    pub fn extra_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }

    /// An `audience` parameter on every token request (Auth0, Okta).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.extra_param("audience", audience)
    }

    /// A `resource` parameter on every token request (RFC 8707).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.extra_param("resource", resource)
    }

    /// Machine to machine: get tokens with the client credentials grant
    /// (RFC 6749 §4.4) instead of a refresh token. The first token is asked
    /// for when it is first needed, and "refresh" means a new grant, with
    /// the same single flight, proactive refresh and 401 handling. Needs a
    /// client secret; [`scope`](Self::scope), [`audience`](Self::audience)
    /// and [`resource`](Self::resource) go with each request.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::TokenManager;
    /// let manager = TokenManager::builder("https://my-tenant.eu.auth0.com/oauth/token")
    ///     .client_id("service-a")
    ///     .client_secret(std::env::var("CLIENT_SECRET").unwrap_or_default())
    ///     .client_credentials()
    ///     .audience("https://api.example.com")
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn client_credentials(mut self) -> Self {
        self.grant = GrantKind::ClientCredentials;
        self
    }

    /// The RFC 7009 revocation endpoint, for [`TokenManager::revoke`](crate::TokenManager::revoke).
    pub fn revocation_url(mut self, url: &str) -> Self {
        self.revocation_url = Some(url.to_owned());
        self
    }

    /// What a client with a secret uses when the user names no method:
    /// what the server's metadata or a provider's documentation says.
    pub(crate) fn default_secret_auth(mut self, method: ClientAuth) -> Self {
        self.default_secret_auth = method;
        self
    }

    /// The token set to start from. With a [`store`](Self::store) that
    /// already holds tokens, the store wins (another process may have rotated
    /// them); these only seed an empty store.
    pub fn initial_tokens(mut self, tokens: TokenSet) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The token set to start from: renamed
    /// [`initial_tokens`](Self::initial_tokens), which says what it does.
    #[deprecated(since = "0.2.0", note = "renamed to `initial_tokens`")]
    pub fn tokens(self, tokens: TokenSet) -> Self {
        self.initial_tokens(tokens)
    }

    /// Where token sets are loaded from and saved to. Default: a
    /// [`MemoryStore`](crate::MemoryStore).
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The HTTP client for the token endpoint. By default the manager builds
    /// its own, which follows no redirects. A client given here should not
    /// follow redirects either: a redirect would carry the refresh token and
    /// the client secret to wherever the token endpoint points. Such a
    /// client's requests are still sent as it decides, but an answer that
    /// comes from any URL other than the token endpoint is refused
    /// ([`Error::InvalidResponse`](crate::Error::InvalidResponse)), so no token from a redirect target is
    /// ever used.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Refresh this long before expiry, at most (never earlier than half-way
    /// through the token's lifetime). Default [`DEFAULT_LEEWAY`].
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The time budget of one refresh, retries included. Default
    /// [`DEFAULT_REFRESH_TIMEOUT`].
    ///
    /// A caller that waits for another task's refresh waits at most the
    /// store's lock wait (this budget plus three store timeouts), then this
    /// budget again plus four store timeouts and five seconds, and gets
    /// [`Error::Timeout`](crate::Error::Timeout) after that. Any duration works, up to
    /// `Duration::MAX` (the sums saturate).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.retry.budget = timeout;
        self
    }

    /// The timeout of one request to the token endpoint. Default
    /// [`DEFAULT_ATTEMPT_TIMEOUT`].
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.retry.attempt_timeout = timeout;
        self
    }

    /// How many times a transient failure (connection error, timeout, 5xx,
    /// 429) is retried within the budget. Default [`DEFAULT_MAX_RETRIES`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// The first retry's delay; each further one doubles, with jitter. A
    /// `Retry-After` header takes precedence. Default
    /// [`DEFAULT_RETRY_BASE_DELAY`].
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.retry.base_delay = delay;
        self
    }

    /// After a failed refresh, how long other callers get the same error
    /// instead of a new call to the token endpoint. `invalid_grant` is kept
    /// until the tokens change. Default [`DEFAULT_FAILURE_COOLDOWN`].
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.failure_cooldown = cooldown;
        self
    }

    /// The largest token response read. Default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The time a store gets for one load, save, lock release or clear
    /// (the wait for a store's lock is longer: another process's whole
    /// refresh). A store that does not answer in time fails like any other
    /// store failure ([`Error::Store`](crate::Error::Store)), which is not remembered for the
    /// failure cooldown. Default [`DEFAULT_STORE_TIMEOUT`].
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// Also treats the OAuth error `code` as `invalid_grant`: the refresh
    /// token is dead and only a new sign-in helps ([`Error::InvalidGrant`](crate::Error::InvalidGrant)).
    /// For providers with their own code, such as GitHub's
    /// `bad_refresh_token`; call once per code.
    ///
    /// ```
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::TokenManager;
    /// let manager = TokenManager::builder("https://github.com/login/oauth/access_token")
    ///     .client_id("Iv1.app")
    ///     .client_secret("…")
    ///     .invalid_grant_error("bad_refresh_token")
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn invalid_grant_error(mut self, code: impl Into<String>) -> Self {
        self.policy.invalid_grant_errors.push(code.into());
        self
    }

    /// Also accepts `token_type` `name` (compared case-insensitively) as a
    /// bearer token, for providers that name theirs differently. Any other
    /// type is refused, since the token is sent as `Bearer`.
    pub fn bearer_token_type(mut self, name: impl Into<String>) -> Self {
        self.policy.bearer_types.push(name.into());
        self
    }

    /// Your own rule for a token endpoint answer (its status and JSON body)
    /// that means the refresh token is dead, for providers that answer
    /// without an OAuth `error` code at all. Such an answer becomes
    /// [`Error::InvalidGrant`](crate::Error::InvalidGrant), described by its
    /// `error_description` or `message`. Each call adds a rule (a preset's
    /// stay); any rule that matches decides.
    ///
    /// ```
    /// # fn run() -> Result<(), reqwest_oauth2_refresh::Error> {
    /// use reqwest_oauth2_refresh::TokenManager;
    /// let manager = TokenManager::builder("https://www.strava.com/oauth/token")
    ///     .client_id("1234")
    ///     .client_secret("…")
    ///     .invalid_grant_when(|status, body| {
    ///         status == 400 && body["errors"][0]["field"] == "refresh_token"
    ///     })
    ///     .build()?;
    /// # let _ = manager; Ok(()) }
    /// ```
    pub fn invalid_grant_when(
        mut self,
        rule: impl Fn(reqwest::StatusCode, &serde_json::Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy.dead_token.push(Arc::new(rule));
        self
    }

    /// How young a token may be and still be refreshed when an API rejects
    /// it. A token the token endpoint issued less than this long ago (to
    /// this manager, or to a peer whose rotation it adopted) that an API
    /// answers 401 to is not refreshed again: another one would not fix a
    /// wrong audience, an API's skewed clock or a misconfigured gateway, and
    /// every refresh would rotate the refresh token. The 401 is handed back
    /// (after looking for a newer set a peer stored), and logged once per
    /// token. Tokens that were given or loaded, whose age is unknown, are
    /// refreshed on their first 401 as always. Default
    /// [`DEFAULT_REJECTED_TOKEN_MIN_AGE`]; `Duration::ZERO` turns the bound
    /// off.
    pub fn rejected_token_min_age(mut self, age: Duration) -> Self {
        self.rejected_token_min_age = age;
        self
    }

    /// The time source for expiry decisions. Default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

//! Where a token may go: the allowed origins, and how a request names its
//! destination (a `Url` for reqwest, an `http::Uri` for tower).

use http::Uri;
use reqwest::Url;

use crate::error::Error;
use crate::origin::Origin;

/// The origins a token may go to, compared exactly (scheme, host, port).
#[derive(Clone)]
pub(crate) struct OriginPolicy {
    origins: Vec<Origin>,
    /// The same origins in the form an `http::Uri` is compared with, for
    /// transports that hand over a `Uri` rather than a `Url` (parsing each
    /// request's `Uri` into a `Url` would allocate on the hot path).
    uri_forms: Vec<UriOrigin>,
}

/// An allowed origin as [`Url`] spells it: scheme and host in lower case
/// (IDNA names in their `xn--` form, IPv6 in brackets, compressed), and the
/// port, explicit or the scheme's default.
#[derive(Clone, Debug)]
struct UriOrigin {
    scheme: String,
    host: String,
    port: u16,
}

impl UriOrigin {
    /// Compared as written, but for ASCII case: a `Uri` is not normalised,
    /// so another spelling of the same host (`0x7f.0.0.1`, `[0::1]`, a
    /// trailing dot) does not match. That only ever withholds the token.
    fn matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let port = uri.port_u16().or(match scheme {
            s if s.eq_ignore_ascii_case("https") => Some(443),
            s if s.eq_ignore_ascii_case("http") => Some(80),
            _ => None,
        });
        port == Some(self.port)
            && scheme.eq_ignore_ascii_case(&self.scheme)
            && host.eq_ignore_ascii_case(&self.host)
    }
}

impl std::fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.origins).finish()
    }
}

impl OriginPolicy {
    /// At least one origin is required: a token with nowhere to go is a
    /// configuration mistake.
    pub(crate) fn parse(origins: &[String]) -> Result<Self, Error> {
        if origins.is_empty() {
            return Err(Error::Config(
                "allow at least one origin with allow_origin".into(),
            ));
        }
        let mut parsed = Vec::with_capacity(origins.len());
        let mut uri_forms = Vec::with_capacity(origins.len());
        for origin in origins {
            parsed.push(Origin::parse(origin)?);
            // Origin::parse has checked that this is a URL with a host and
            // a port.
            let url = Url::parse(origin).map_err(|e| Error::Config(e.to_string()))?;
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                return Err(Error::Config(format!("`{origin}` has no host")));
            };
            uri_forms.push(UriOrigin {
                scheme: url.scheme().to_owned(),
                host: host.to_owned(),
                port,
            });
        }
        Ok(Self {
            origins: parsed,
            uri_forms,
        })
    }

    #[inline]
    pub(crate) fn allows(&self, url: &Url) -> bool {
        self.origins.iter().any(|o| o.matches(url))
    }

    /// Whether `uri` names an allowed origin. A `Uri` without scheme and
    /// host (path only) names none: where it goes is up to the transport.
    #[inline]
    pub(crate) fn allows_uri(&self, uri: &Uri) -> bool {
        self.uri_forms.iter().any(|o| o.matches(uri))
    }
}

/// Where a request goes, as its transport names it: the origin policy
/// decides whether that may carry the token.
pub(crate) trait Destination {
    fn allowed_by(&self, origins: &OriginPolicy) -> bool;
}

/// reqwest: the request's URL.
impl Destination for Url {
    #[inline]
    fn allowed_by(&self, origins: &OriginPolicy) -> bool {
        origins.allows(self)
    }
}

/// tower: the request's URI, when it has an origin.
impl Destination for Uri {
    #[inline]
    fn allowed_by(&self, origins: &OriginPolicy) -> bool {
        origins.allows_uri(self)
    }
}

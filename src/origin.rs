//! Which requests may carry the token: origins (scheme, host, port) and the
//! https-or-loopback rule.

use std::net::IpAddr;

use reqwest::Url;

use crate::error::Error;

/// One allowed origin, compared exactly against each request's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    pub(crate) fn parse(origin: &str) -> Result<Self, Error> {
        let url = Url::parse(origin)
            .map_err(|e| Error::Config(format!("`{origin}` is not an origin: {e}")))?;
        if has_credentials(&url) {
            return Err(Error::Config(
                "an allowed origin has credentials; an origin is scheme://host[:port]".into(),
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(format!(
                "`{origin}` has a path, query or fragment; an origin is scheme://host[:port]"
            )));
        }
        if !is_secure_url(&url) {
            return Err(Error::Config(format!(
                "`{origin}` is not https; tokens go over http only to loopback"
            )));
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(Error::Config(format!("`{origin}` has no host")));
        };
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    pub(crate) fn matches(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str() == Some(self.host.as_str())
            && url.port_or_known_default() == Some(self.port)
    }
}

/// A configured endpoint URL (`what` names it in the error): a URL, https
/// (http only for loopback), without credentials (they would travel in
/// every request and show wherever the URL is logged).
pub(crate) fn parse_secure_url(what: &str, url: &str) -> Result<Url, Error> {
    let url =
        Url::parse(url).map_err(|e| Error::Config(format!("the {what} is not a URL: {e}")))?;
    if has_credentials(&url) {
        return Err(Error::Config(format!(
            "the {what} has credentials in it; give the client secret with client_secret"
        )));
    }
    if !is_secure_url(&url) {
        return Err(Error::Config(format!(
            "the {what} must use https (http only for loopback)"
        )));
    }
    Ok(url)
}

fn has_credentials(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// `url` as it may be shown: without its password, if it has one.
pub(crate) fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if has_credentials(&parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            format!("{parsed} (credentials removed)")
        }
        _ => url.to_owned(),
    }
}

/// https anywhere, or http to a loopback address (development).
pub(crate) fn is_secure_url(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => is_loopback(url),
        _ => false,
    }
}

/// An IP loopback literal, or exactly the name `localhost`. Not
/// `*.localhost` nor `localhost.`: those names go to the DNS resolver, and
/// whoever answers it would decide where a cleartext token goes.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn origin_matches_scheme_host_and_port_exactly() {
        let origin = Origin::parse("https://API.example.com").unwrap();
        assert!(origin.matches(&url("https://api.example.com/v1/x?y=1")));
        assert!(origin.matches(&url("https://api.example.com:443/")));
        assert!(!origin.matches(&url("http://api.example.com/")));
        assert!(!origin.matches(&url("https://api.example.com:8443/")));
        assert!(!origin.matches(&url("https://api.example.com.evil.net/")));
        assert!(!origin.matches(&url("https://evil.net/api.example.com")));
        assert!(!origin.matches(&url("https://x.api.example.com/")));
    }

    #[test]
    fn origins_must_be_secure_and_bare() {
        assert!(Origin::parse("http://api.example.com").is_err());
        assert!(Origin::parse("https://api.example.com/v1").is_err());
        assert!(Origin::parse("https://user:pw@api.example.com").is_err());
        assert!(Origin::parse("ftp://api.example.com").is_err());
        assert!(Origin::parse("not a url").is_err());
        assert!(Origin::parse("http://127.0.0.1:8080").is_ok());
        assert!(Origin::parse("http://[::1]:8080").is_ok());
        assert!(Origin::parse("http://localhost:3000/").is_ok());
        assert!(Origin::parse("http://10.0.0.1").is_err());
    }

    #[test]
    fn plain_http_only_for_ip_loopback_and_the_exact_name_localhost() {
        for trusted in [
            "http://localhost:1",
            "http://LOCALHOST/",
            "http://127.9.9.9/",
            "http://[::1]/",
        ] {
            assert!(is_secure_url(&url(trusted)), "{trusted}");
        }
        for resolved in [
            "http://api.localhost/",
            "http://a.b.localhost/",
            "http://localhost./",
            "http://localhost.example.com/",
            "http://0x7f.example/",
        ] {
            assert!(!is_secure_url(&url(resolved)), "{resolved}");
            assert!(Origin::parse(resolved).is_err(), "{resolved}");
            assert!(
                parse_secure_url("token URL", resolved).is_err(),
                "{resolved}"
            );
        }
    }

    #[test]
    fn credentials_are_refused_in_every_configured_url() {
        let err =
            parse_secure_url("token URL", "https://user:hunter2@as.example/token").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(parse_secure_url("token URL", "https://user@as.example/token").is_err());
        let err = Origin::parse("https://user:hunter2@api.example.com").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let shown = redacted_url("https://user:hunter2@as.example/token");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn endpoint_urls_must_be_secure() {
        assert!(parse_secure_url("token URL", "https://as.example/token").is_ok());
        assert!(parse_secure_url("token URL", "http://127.0.0.1:9/token").is_ok());
        let err = parse_secure_url("token URL", "http://as.example/token").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: the token URL must use https (http only for loopback)"
        );
        assert!(parse_secure_url("revocation URL", "no url").is_err());
    }
}

//! A DPoP proof's `htu` (RFC 9449 §4.2): the request's URI without query
//! and fragment. Userinfo goes too (it would put a credential in the
//! proof), and the default port: the server compares with its own view of
//! the URL, which has neither.

use url::Url;

use crate::error::Error;

/// `scheme://host[:port]/path` of `url`; the path is kept as it is on the
/// wire (percent-encoding and case), and an empty one is `/`.
pub(crate) fn htu(url: &Url) -> Result<String, Error> {
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config(format!("a DPoP request needs a host: {}", url.scheme())))?;
    let mut htu = String::with_capacity(url.as_str().len());
    htu.push_str(url.scheme());
    htu.push_str("://");
    htu.push_str(host);
    if let Some(port) = url.port() {
        htu.push(':');
        htu.push_str(&port.to_string());
    }
    let path = url.path();
    htu.push_str(if path.is_empty() { "/" } else { path });
    Ok(htu)
}

/// The origin DPoP nonces are kept under (`scheme://host:port`, the port
/// always written, so that one origin has one key).
pub(crate) fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(url: &str) -> String {
        htu(&Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn query_fragment_userinfo_and_default_port_are_dropped() {
        assert_eq!(
            of("https://api.example.com/a/b?x=1#f"),
            "https://api.example.com/a/b"
        );
        assert_eq!(
            of("https://user:pw@api.example.com/a"),
            "https://api.example.com/a"
        );
        assert_eq!(
            of("https://api.example.com:443/a"),
            "https://api.example.com/a"
        );
        assert_eq!(of("http://127.0.0.1:80/a"), "http://127.0.0.1/a");
    }

    #[test]
    fn other_ports_case_and_encoding_are_kept_and_the_host_is_lowercase() {
        assert_eq!(
            of("https://API.Example.com:8443/A%2Fb/C"),
            "https://api.example.com:8443/A%2Fb/C"
        );
        assert_eq!(of("https://api.example.com"), "https://api.example.com/");
        assert_eq!(of("http://[::1]:3000/x"), "http://[::1]:3000/x");
    }

    #[test]
    fn urls_without_a_host_are_refused() {
        assert!(htu(&Url::parse("data:text/plain,hi").unwrap()).is_err());
    }
}

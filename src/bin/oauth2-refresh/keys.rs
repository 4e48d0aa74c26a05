//! The client's private key for `private_key_jwt`: the options, and the key
//! file read and turned into the library's `SigningKey`. Messages name the
//! file, never what is in it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use reqwest_oauth2_refresh::{Algorithm, AssertionAudience, SigningKey};

use crate::report::Failure;

/// Key files are small; a cap keeps a wrong path (a log, a device) from
/// being read whole. The library's own key-file reader uses the same.
const MAX_KEY_FILE_BYTES: u64 = 256 * 1024;

/// Where --help lists the key options.
const HEADING: &str = "Client key (private_key_jwt)";

#[derive(Args)]
pub struct KeyOptions {
    /// Authenticate the client with a JWT signed by this private key
    /// (private_key_jwt, RFC 7523): a PEM file (PKCS#8, or PKCS#1 RSA) or a
    /// private JWK (JSON). Only its owner may read it (chmod 600). It is the
    /// client authentication unless --auth says otherwise; with --issuer and
    /// a client secret too, only if the server lists private_key_jwt.
    #[arg(long, help_heading = HEADING, value_name = "PATH", requires = "client_id")]
    pub private_key: Option<PathBuf>,

    /// The `kid` header: the id the server knows the key by (overrides a
    /// JWK's own `kid`).
    #[arg(long, help_heading = HEADING, value_name = "KID", requires = "private_key")]
    pub key_id: Option<String>,

    /// The signing algorithm [default: ES256 for a P-256 key, EdDSA for
    /// Ed25519, RS256 for RSA, or the JWK's `alg`]; PS256 for an RSA key
    /// whose server wants it.
    #[arg(long, help_heading = HEADING, value_enum, value_name = "ALG", requires = "private_key")]
    pub key_alg: Option<KeyAlg>,

    /// The assertion's `aud`: `issuer`, `endpoint` (the URL of the endpoint
    /// called; Microsoft Entra and Okta want it), or an exact value
    /// [default: the issuer with --issuer, else the endpoint].
    #[arg(long, help_heading = HEADING, value_name = "AUDIENCE", value_parser = parse_audience, requires = "private_key")]
    pub assertion_audience: Option<AssertionAudience>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyAlg {
    /// ECDSA with P-256.
    #[value(name = "ES256")]
    Es256,
    /// Ed25519.
    #[value(name = "EdDSA")]
    EdDsa,
    /// RSA, PKCS#1 v1.5.
    #[value(name = "RS256")]
    Rs256,
    /// RSA-PSS.
    #[value(name = "PS256")]
    Ps256,
}

impl From<KeyAlg> for Algorithm {
    fn from(alg: KeyAlg) -> Self {
        match alg {
            KeyAlg::Es256 => Algorithm::Es256,
            KeyAlg::EdDsa => Algorithm::EdDsa,
            KeyAlg::Rs256 => Algorithm::Rs256,
            KeyAlg::Ps256 => Algorithm::Ps256,
        }
    }
}

fn parse_audience(text: &str) -> Result<AssertionAudience, String> {
    match text {
        "" => Err("the audience is empty".into()),
        "issuer" => Ok(AssertionAudience::Issuer),
        "endpoint" => Ok(AssertionAudience::Endpoint),
        exact => Ok(AssertionAudience::Custom(exact.to_owned())),
    }
}

/// The key of --private-key, with --key-id and --key-alg applied; `None`
/// without --private-key.
pub fn signing_key(options: &KeyOptions) -> Result<Option<SigningKey>, Failure> {
    let Some(path) = &options.private_key else {
        return Ok(None);
    };
    let shown = path.display();
    let text = read_key_file(path).map_err(Failure::local)?;
    let mut key = parse_key(&text).map_err(|why| {
        Failure::local(format!(
            "the key file {shown} (--private-key) is not usable: {why}"
        ))
    })?;
    if let Some(alg) = options.key_alg {
        key = key.with_algorithm(alg.into()).map_err(|e| {
            Failure::local(format!(
                "--key-alg for the key file {shown}: {}",
                config(&e)
            ))
        })?;
    }
    if let Some(kid) = &options.key_id {
        key = key.with_key_id(kid);
    }
    Ok(Some(key))
}

/// A PEM key or a private JWK, told apart by their first character.
fn parse_key(text: &str) -> Result<SigningKey, String> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| "it holds invalid JSON".to_owned())?;
        if value.get("keys").is_some() {
            return Err("it holds a JWK set: give a file with one private JWK".into());
        }
        if value.get("type").and_then(|t| t.as_str()) == Some("service_account") {
            return Err(
                "it is a Google service-account key file, not a client key: \
                 this tool refreshes refresh tokens, which service accounts have none of"
                    .into(),
            );
        }
        return SigningKey::from_jwk(text).map_err(|e| config(&e));
    }
    if text.starts_with("-----BEGIN") {
        return SigningKey::from_pem(text).map_err(|e| config(&e));
    }
    Err("it holds neither a PEM private key (-----BEGIN ...) nor a JWK (JSON)".into())
}

/// The library's configuration message, without its `invalid
/// configuration:` prefix.
fn config(error: &reqwest_oauth2_refresh::Error) -> String {
    match error {
        reqwest_oauth2_refresh::Error::Config(message) => message.clone(),
        other => crate::report::chain(other),
    }
}

/// The key file's text, if it is a regular file that only its owner can
/// read: the rule the library applies to its key files and to token files.
fn read_key_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // A FIFO would block the open until someone writes to it: non-blocking,
    // the open returns and the file-type check below refuses it. A regular
    // file reads the same either way.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = options
        .open(path)
        .map_err(|e| format!("cannot open the key file {shown} (--private-key): {e}"))?;
    // The open file's metadata, not the path's: no window between the
    // check and the read.
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("the key file {shown} is not a file"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "the key file {shown} can be read by group or others (mode {:o}); \
                 run `chmod 600 {shown}`",
                mode & 0o777
            ));
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the key file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "the key file {shown} is larger than {MAX_KEY_FILE_BYTES} bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("the key file {shown} is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audience_words_and_an_exact_value() {
        assert_eq!(parse_audience("issuer"), Ok(AssertionAudience::Issuer));
        assert_eq!(parse_audience("endpoint"), Ok(AssertionAudience::Endpoint));
        assert_eq!(
            parse_audience("https://login.example.com/"),
            Ok(AssertionAudience::Custom(
                "https://login.example.com/".into()
            ))
        );
        assert!(parse_audience("").is_err());
    }

    #[test]
    fn what_is_not_a_key_is_refused_without_quoting_it() {
        for text in [
            "key-material-XYZ",
            "{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":\"key-material-XYZ\"}",
            "{\"keys\":[{\"d\":\"key-material-XYZ\"}]}",
            "{\"type\":\"service_account\",\"private_key\":\"key-material-XYZ\"}",
            "-----BEGIN PRIVATE KEY-----\nkey-material-XYZ\n-----END PRIVATE KEY-----\n",
            "{\"d\": \"key-material-XYZ\"",
        ] {
            let Err(why) = parse_key(text) else {
                panic!("accepted {text:?}");
            };
            assert!(!why.contains("key-material-XYZ"), "{why}");
        }
    }
}

//! PEM (RFC 7468) private keys: the label says which DER is inside.

use base64::Engine as _;

use crate::error::Error;

/// What a PEM block holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PemKey {
    /// `PRIVATE KEY`: PKCS#8 (RFC 5958), any key type.
    Pkcs8(Vec<u8>),
    /// `RSA PRIVATE KEY`: PKCS#1 `RSAPrivateKey` (RFC 8017 A.1.2).
    Pkcs1(Vec<u8>),
}

/// The first private-key block of `text`. Encrypted keys and SEC1 EC keys
/// are refused with the command that converts them.
pub(crate) fn parse(text: &str) -> Result<PemKey, Error> {
    let (label, body) =
        first_block(text).ok_or_else(|| Error::Config("no PEM private key block found".into()))?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| Error::Config(format!("the PEM {label} block is not valid base64")))?;
    match label {
        "PRIVATE KEY" => Ok(PemKey::Pkcs8(der)),
        "RSA PRIVATE KEY" => Ok(PemKey::Pkcs1(der)),
        "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => Err(Error::Config(format!(
            "{label} keys are not read; convert to unencrypted PKCS#8 with \
             `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`"
        ))),
        other => Err(Error::Config(format!(
            "the PEM block is {other:?}, not a private key"
        ))),
    }
}

/// The label and the base64 body (whitespace removed) of the first block
/// whose label ends in `PRIVATE KEY`; certificates before it are skipped.
fn first_block(text: &str) -> Option<(&str, String)> {
    let mut rest = text;
    loop {
        let start = rest.find("-----BEGIN ")? + "-----BEGIN ".len();
        let after = &rest[start..];
        let label_end = after.find("-----")?;
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_start.find(&end_marker)?;
        if label.ends_with("PRIVATE KEY") {
            let body = body_start[..body_end]
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            return Some((label, body));
        }
        rest = &body_start[body_end + end_marker.len()..];
    }
}

/// The key type a PKCS#8 document names in its AlgorithmIdentifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Ec,
    Ed25519,
    Rsa,
}

impl KeyType {
    /// The key's kind in a sentence: "an EC P-256 key".
    pub(crate) fn described(self) -> &'static str {
        match self {
            KeyType::Ec => "an EC P-256 key",
            KeyType::Ed25519 => "an Ed25519 key",
            KeyType::Rsa => "an RSA key",
        }
    }
}

/// Finds the algorithm OID near the start of a PKCS#8 document (it follows
/// the version, within the first few dozen bytes).
pub(crate) fn pkcs8_key_type(der: &[u8]) -> Option<KeyType> {
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    let head = &der[..der.len().min(32)];
    let has = |oid: &[u8]| head.windows(oid.len()).any(|w| w == oid);
    if has(RSA) {
        Some(KeyType::Rsa)
    } else if has(EC) {
        Some(KeyType::Ec)
    } else if has(ED25519) {
        Some(KeyType::Ed25519)
    } else {
        None
    }
}

/// PKCS#8 DER as PEM (RFC 7468 §10): 64 base64 characters a line.
pub(crate) fn encode_pkcs8(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

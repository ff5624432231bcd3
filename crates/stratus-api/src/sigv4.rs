//! Request signing in the AWS Signature Version 4 style (HMAC-SHA256).
//!
//! The same access key and secret sign calls to the `/v1` API (service `stratus`) and, later,
//! to the S3 endpoint (service `s3`), so the canonicalisation follows AWS's rules exactly:
//! path segments are URI-encoded once (the S3 rule), query parameters are sorted, and the
//! signed headers are lower-cased, trimmed and sorted. The client signs with
//! [`authorization_header`]; the server recomputes with [`signature`] and compares.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Hash of an empty payload, used by GET/DELETE requests without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Percent-encode everything but the unreserved characters (RFC 3986), keeping `/` when asked.
pub fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decode `%XX` escapes (and `+` as space when `plus_is_space`, as in form-encoded queries).
/// Invalid escapes are kept literally: the signature will then simply not match.
pub fn percent_decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The canonical URI: each segment decoded then encoded once, so clients that encode
/// differently still agree with the server.
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_string();
    }
    raw_path
        .split('/')
        .map(|seg| uri_encode(&percent_decode(seg, false), false))
        .collect::<Vec<_>>()
        .join("/")
}

/// The canonical query string: pairs decoded, re-encoded, sorted by name then value.
/// `skip` names a parameter left out (the signature itself, in presigned URLs).
pub fn canonical_query(raw_query: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k, true), false),
                uri_encode(&percent_decode(v, true), false),
            )
        })
        .filter(|(k, _)| skip.is_none_or(|s| k != s))
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// What a signature covers.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (may contain `%XX`).
    pub raw_path: &'a str,
    /// The query string as sent on the wire, without `?`.
    pub raw_query: &'a str,
    /// The signed headers, any case, any order; values as sent.
    pub headers: Vec<(String, String)>,
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD` where the service allows it.
    pub payload_hash: &'a str,
}

/// Build the canonical request; returns it with the `SignedHeaders` list.
pub fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    headers.sort();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed_headers = signed.join(";");
    let mut canonical_headers = String::new();
    for (k, v) in &headers {
        canonical_headers.push_str(k);
        canonical_headers.push(':');
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let creq = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.raw_path),
        canonical_query(req.raw_query, Some("X-Amz-Signature")),
        canonical_headers,
        signed_headers,
        req.payload_hash
    );
    (creq, signed_headers)
}

/// Credential scope: `date/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The hex signature of `req` at `amz_date` (`YYYYMMDDTHHMMSSZ`) within `scope`.
pub fn signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    req: &Request<'_>,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let (creq, _) = canonical_request(req);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope(date, region, service),
        sha256_hex(creq.as_bytes())
    );
    hex::encode(hmac(
        &signing_key(secret, date, region, service),
        string_to_sign.as_bytes(),
    ))
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parse an Authorization header; the error says which part is wrong.
pub fn parse_authorization(header: &str) -> Result<Authorization, String> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| format!("authorization: algorithm must be {ALGORITHM}"))?
        .trim();
    let mut credential = None;
    let mut signed = None;
    let mut sig = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    let credential = credential.ok_or("authorization: Credential is missing")?;
    let signed = signed.ok_or("authorization: SignedHeaders is missing")?;
    let sig = sig.ok_or("authorization: Signature is missing")?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || parts[1].len() != 8 {
        return Err(
            "authorization: Credential must be KEY/YYYYMMDD/REGION/SERVICE/aws4_request".into(),
        );
    }
    Ok(Authorization {
        access_key: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers: signed.split(';').map(str::to_string).collect(),
        signature: sig.to_string(),
    })
}

/// Build the Authorization header value for a client request.
pub fn authorization_header(
    access_key: &str,
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    req: &Request<'_>,
) -> String {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let (_, signed_headers) = canonical_request(req);
    let sig = signature(secret, amz_date, region, service, req);
    format!(
        "{ALGORITHM} Credential={access_key}/{}, SignedHeaders={signed_headers}, Signature={sig}",
        scope(date, region, service)
    )
}

/// Constant-time comparison of two signatures.
pub fn signatures_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GET-object example from AWS's S3 SigV4 documentation ("Example: GET Object").
    #[test]
    fn matches_aws_documented_s3_example() {
        let req = Request {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: "",
            headers: vec![
                ("Host".into(), "examplebucket.s3.amazonaws.com".into()),
                ("Range".into(), "bytes=0-9".into()),
                ("x-amz-content-sha256".into(), EMPTY_SHA256.into()),
                ("x-amz-date".into(), "20130524T000000Z".into()),
            ],
            payload_hash: EMPTY_SHA256,
        };
        let sig = signature(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524T000000Z",
            "us-east-1",
            "s3",
            &req,
        );
        assert_eq!(
            sig,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn parses_and_rebuilds_header() {
        let req = Request {
            method: "POST",
            raw_path: "/v1/projects",
            raw_query: "b=2&a=1",
            headers: vec![
                ("host".into(), "h".into()),
                ("x-amz-date".into(), "20260101T000000Z".into()),
            ],
            payload_hash: EMPTY_SHA256,
        };
        let h = authorization_header("AK", "SK", "20260101T000000Z", "r", "stratus", &req);
        let p = parse_authorization(&h).unwrap();
        assert_eq!(p.access_key, "AK");
        assert_eq!(p.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(
            p.signature,
            signature("SK", "20260101T000000Z", "r", "stratus", &req)
        );
        assert!(parse_authorization("Bearer x").is_err());
        assert!(parse_authorization(
            "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=x, Signature=y"
        )
        .is_err());
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_query("b=2&a=%7e&a=1", None), "a=1&a=~&b=2");
        assert_eq!(canonical_uri("/a%20b/c d"), "/a%20b/c%20d");
        assert_eq!(percent_decode("%zz%41", false), "%zzA");
    }
}

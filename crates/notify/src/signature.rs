//! The generic webhook's signature (docs/notifications.md, "Verifying a webhook"):
//! `X-Keyturn-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//!
//! The timestamp is inside the signed text, so a receiver that rejects old timestamps also rejects replays of
//! an old request. [`verify_signature`] is exactly what the docs tell receivers to do; the tests use it.

use aws_lc_rs::hmac;
use chrono::{DateTime, TimeDelta, Utc};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Keyturn-Signature";
/// The header carrying the event id, for receivers that deduplicate before parsing the body.
pub const EVENT_ID_HEADER: &str = "X-Keyturn-Event-Id";
/// How far a signature's timestamp may be from the receiver's clock, either way.
pub const SIGNATURE_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// Why a webhook request's signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("malformed {SIGNATURE_HEADER} header: {0}")]
    Malformed(&'static str),
    #[error("the signature's timestamp is {age_secs} s from now, more than the {} s tolerated (a replay?)", SIGNATURE_TOLERANCE.num_seconds())]
    OutsideTolerance { age_secs: i64 },
    #[error("no v1 signature matches the body (wrong secret, or the body was changed)")]
    Mismatch,
}

/// The text that is signed: the timestamp, a dot, the raw body.
fn signed_text(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut text = format!("{timestamp}.").into_bytes();
    text.extend_from_slice(body);
    text
}

/// The header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &signed_text(timestamp, body));
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// Checks a request as a receiver should: the header parses, its timestamp is within
/// [`SIGNATURE_TOLERANCE`] of `now`, and one of its `v1` signatures is the HMAC of `"<t>.<body>"` (compared in
/// constant time). Unknown `key=value` parts are ignored so later schemes can be added beside `v1`.
pub fn verify_signature(secret: &[u8], header: &str, body: &[u8], now: DateTime<Utc>) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',').map(str::trim) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(SignatureError::Malformed("expected comma-separated key=value pairs"));
        };
        match key {
            "t" if timestamp.is_some() => return Err(SignatureError::Malformed("more than one t=")),
            "t" => {
                timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed("t= is not an integer"))?)
            }
            "v1" => signatures.push(decode_hex(value).ok_or(SignatureError::Malformed("v1= is not hex"))?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature"));
    }
    let age_secs = now.timestamp().saturating_sub(timestamp);
    if age_secs.saturating_abs() > SIGNATURE_TOLERANCE.num_seconds() {
        return Err(SignatureError::OutsideTolerance { age_secs });
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let text = signed_text(timestamp, body);
    if signatures.iter().any(|tag| hmac::verify(&key, &text, tag).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-0123456789abcdef";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn the_signature_matches_an_independent_hmac_sha256() {
        // The primitive against RFC 4231 test case 2, then the framing: "<t>." + body.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

        let header = sign(SECRET, 1_700_000_000, b"{}");
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET), b"1700000000.{}");
        let hex: String = expected.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(header, format!("t=1700000000,v1={hex}"));
    }

    #[test]
    fn a_fresh_signature_verifies_and_anything_changed_does_not() {
        let body = br#"{"event_id":"e1"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        assert_eq!(verify_signature(SECRET, &header, body, at(1_700_000_000 + 299)), Ok(()));
        assert_eq!(verify_signature(SECRET, &header, body, at(1_700_000_000 - 299)), Ok(()));
        assert_eq!(
            verify_signature(b"another-secret-0000", &header, body, at(1_700_000_000)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, &header, br#"{"event_id":"e2"}"#, at(1_700_000_000)),
            Err(SignatureError::Mismatch)
        );
        // Moving the timestamp forward to dodge the tolerance breaks the signature.
        let replayed = header.replace("t=1700000000", "t=1700001000");
        assert_eq!(verify_signature(SECRET, &replayed, body, at(1_700_001_000)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn old_or_future_timestamps_are_rejected_as_replays() {
        let header = sign(SECRET, 1_700_000_000, b"x");
        assert_eq!(
            verify_signature(SECRET, &header, b"x", at(1_700_000_301)),
            Err(SignatureError::OutsideTolerance { age_secs: 301 })
        );
        assert_eq!(
            verify_signature(SECRET, &header, b"x", at(1_700_000_000 - 301)),
            Err(SignatureError::OutsideTolerance { age_secs: -301 })
        );
    }

    #[test]
    fn any_matching_v1_is_enough_and_malformed_headers_say_what_is_wrong() {
        let good = sign(SECRET, 10, b"x");
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=10,v1={},v1={v1},v2=future", "00".repeat(32));
        assert_eq!(verify_signature(SECRET, &header, b"x", at(10)), Ok(()));
        for (header, what) in [
            ("v1=00", "no t= timestamp"),
            ("t=10", "no v1= signature"),
            ("t=ten,v1=00", "t= is not an integer"),
            ("t=10,v1=zz", "v1= is not hex"),
            ("t=10,t=11,v1=00", "more than one t="),
            ("garbage", "expected comma-separated key=value pairs"),
        ] {
            assert_eq!(verify_signature(SECRET, header, b"x", at(10)), Err(SignatureError::Malformed(what)));
        }
    }
}

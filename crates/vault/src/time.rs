//! The one place where keyturn's times (chrono) meet the SDK's (`time::OffsetDateTime`), and where the vault's
//! own clock is read from its answers.

use azure_core::http::headers::{HeaderName, Headers};
use chrono::{DateTime, Utc};
use time::OffsetDateTime;

/// The HTTP `Date` header: Key Vault sends it on every response (RFC 7231 IMF-fixdate).
const DATE: HeaderName = HeaderName::from_static("date");

/// An SDK time as keyturn's. Key Vault times are whole epoch seconds, so nothing is lost; a time chrono
/// cannot represent (beyond year 262143) cannot come from Key Vault and maps to `None`.
pub fn from_sdk(time: OffsetDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.unix_timestamp(), time.nanosecond())
}

/// keyturn's time as the SDK's. Key Vault stores whole seconds; sub-second parts are dropped here so that
/// what keyturn sends is exactly what it reads back.
pub fn to_sdk(time: DateTime<Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(time.timestamp()).ok()
}

/// The vault's own clock when it answered: the response's `Date`. `None` when the answer has none or it does not
/// parse (Key Vault always sends one; a caller that needs a time then says which clock it used instead).
pub fn vault_time(headers: &Headers) -> Option<DateTime<Utc>> {
    let date = headers.get_optional_str(&DATE)?;
    azure_core::time::parse_rfc7231(date).ok().and_then(from_sdk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vault_time_is_its_date_header_when_there_is_one_that_parses() {
        let mut headers = Headers::new();
        assert_eq!(vault_time(&headers), None);
        headers.insert(DATE, "Thu, 02 Dec 2027 16:30:05 GMT");
        assert_eq!(vault_time(&headers), DateTime::from_timestamp(1_827_765_005, 0));
        headers.insert(DATE, "yesterday");
        assert_eq!(vault_time(&headers), None);
    }

    #[test]
    fn times_round_trip_at_whole_seconds() {
        let now = DateTime::from_timestamp(1_767_225_600, 123_000_000).unwrap();
        let sdk = to_sdk(now).unwrap();
        assert_eq!(sdk.unix_timestamp(), 1_767_225_600);
        assert_eq!(sdk.nanosecond(), 0);
        assert_eq!(from_sdk(sdk), DateTime::from_timestamp(1_767_225_600, 0));
        assert_eq!(from_sdk(OffsetDateTime::UNIX_EPOCH), Some(DateTime::UNIX_EPOCH));
    }
}

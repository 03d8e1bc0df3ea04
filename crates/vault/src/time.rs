//! The one place where keyturn's times (chrono) meet the SDK's (`time::OffsetDateTime`).

use chrono::{DateTime, Utc};
use time::OffsetDateTime;

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

#[cfg(test)]
mod tests {
    use super::*;

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

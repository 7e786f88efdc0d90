//! Conversions between protobuf `Timestamp`s and chrono times.

use chrono::{DateTime, Utc};

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// `None` for a timestamp outside chrono's range or with nanos outside
/// protobuf's 0..=999,999,999.
pub fn datetime(timestamp: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
}

/// A request timestamp: INVALID_ARGUMENT naming `field` when it is not a
/// valid time.
pub fn required_datetime(
    field: &str,
    timestamp: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, crate::error::ApiError> {
    datetime(timestamp)
        .ok_or_else(|| crate::error::ApiError::invalid(field, "is not a valid timestamp"))
}

/// An optional request timestamp: INVALID_ARGUMENT naming `field` when it
/// is set but not a valid time.
pub fn optional_datetime(
    field: &str,
    timestamp: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, crate::error::ApiError> {
    timestamp
        .map(|timestamp| required_datetime(field, timestamp))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_invalid_ones_are_refused() {
        let now = Utc::now();
        assert_eq!(datetime(&timestamp(now)), Some(now));
        let negative_nanos = prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        };
        assert_eq!(datetime(&negative_nanos), None);
        let too_far = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(datetime(&too_far), None);
    }
}

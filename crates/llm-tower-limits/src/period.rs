//! A budget's calendar period (UTC) at a moment: which one it is, and how long it has left.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llm_tower_core::civil::{civil_from_days, days_from_civil};

use crate::settings::Period;

const DAY: u64 = 86_400;

/// The number of the period `now` is in (days or months since 1970), and the time to its end.
pub(crate) fn period_at(per: Period, now: SystemTime) -> (u64, Duration) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs / DAY;
    let into_day = secs % DAY;
    match per {
        Period::Day => (day, Duration::from_secs(DAY - into_day)),
        Period::Month => {
            let (year, month, _) = civil_from_days(day.cast_signed());
            let next = if month == 12 {
                days_from_civil(year + 1, 1, 1)
            } else {
                days_from_civil(year, month + 1, 1)
            };
            let left = (next.cast_unsigned() - day) * DAY - into_day;
            (
                (year * 12 + month - 1).cast_unsigned(),
                Duration::from_secs(left),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn days_and_months_end_where_the_calendar_says() {
        // 2026-12-06T11:00:00Z.
        let now = at(1_796_554_800);
        assert_eq!(civil_from_days(1_796_554_800 / 86_400), (2026, 12, 6));
        assert_eq!(
            period_at(Period::Day, now).1,
            Duration::from_secs(13 * 3600)
        );
        // 25 days and 13 hours to 2027-01-01.
        let (month, left) = period_at(Period::Month, now);
        assert_eq!(month, 2026 * 12 + 11);
        assert_eq!(left, Duration::from_secs(25 * DAY + 13 * 3600));
        // February of a leap year has 29 days.
        let feb = days_from_civil(2028, 2, 1).cast_unsigned() * DAY;
        assert_eq!(
            period_at(Period::Month, at(feb)).1,
            Duration::from_secs(29 * DAY)
        );
        assert_eq!(civil_from_days(days_from_civil(2000, 3, 1)), (2000, 3, 1));
    }
}

//! Explanations, written piece by piece. They are built for every decision,
//! and core's formatting machinery (exact float formatting above all) costs
//! more than scanning a channel's slots.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use kairos_core::time::{push_two_digits, WEEKDAYS};

/// A sentence being written.
pub(super) struct Text(String);

impl Text {
    pub fn new() -> Self {
        Self(String::with_capacity(96))
    }

    pub fn s(mut self, s: &str) -> Self {
        self.0.push_str(s);
        self
    }

    pub fn n(mut self, n: u64) -> Self {
        let mut buf = [0u8; 20];
        let text = digits_from_right(n, 0, false, &mut buf);
        self.0.push_str(text);
        self
    }

    /// `v` with `digits` decimals (at most 6), the scaled value rounded half
    /// to even (like `{:.N}` but for the last bit of a product's rounding).
    pub fn fixed(mut self, v: f64, digits: u32) -> Self {
        let digits = digits.min(6);
        if !v.is_finite() || v.abs() >= 1e12 {
            self.0.push_str(&format!("{v:.*}", digits as usize));
            return self;
        }
        let n = (v.abs() * 10f64.powi(digits as i32)).round_ties_even() as u64;
        let mut buf = [0u8; 24];
        let text = digits_from_right(n, digits, v < 0.0 && n > 0, &mut buf);
        self.0.push_str(text);
        self
    }

    /// "20:30" for 1230 minutes.
    pub fn hh_mm(mut self, minutes: u32) -> Self {
        push_two_digits(&mut self.0, minutes / 60 % 24);
        self.0.push(':');
        push_two_digits(&mut self.0, minutes % 60);
        self
    }

    /// "Monday 20:30": a local time's weekday and wall-clock time.
    pub fn weekday_time(self, t: DateTime<FixedOffset>) -> Self {
        self.s(WEEKDAYS[t.weekday().num_days_from_monday() as usize])
            .s(" ")
            .hh_mm(t.hour() * 60 + t.minute())
    }

    pub fn done(self) -> String {
        self.0
    }
}

/// `n` written into the end of `buf` with a decimal point `decimals` digits
/// from the right (and a leading minus sign if `negative`).
fn digits_from_right(mut n: u64, decimals: u32, negative: bool, buf: &mut [u8]) -> &str {
    let mut at = buf.len();
    let mut put = |b: u8| {
        at -= 1;
        buf[at] = b;
    };
    for _ in 0..decimals {
        put(b'0' + (n % 10) as u8);
        n /= 10;
    }
    if decimals > 0 {
        put(b'.');
    }
    loop {
        put(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        put(b'-');
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::Text;

    #[test]
    fn numbers_and_times_read_like_std_formatting() {
        for (v, d) in [
            (0.17071, 3),
            (0.0, 3),
            (0.9996, 3),
            (12.5, 0),
            (5.558, 0),
            (-0.26, 1),
        ] {
            assert_eq!(
                Text::new().fixed(v, d).done(),
                format!("{v:.*}", d as usize)
            );
        }
        assert_eq!(Text::new().n(0).s(" ").n(1234).done(), "0 1234");
        assert_eq!(
            Text::new().hh_mm(1230).s("-").hh_mm(5).done(),
            "20:30-00:05"
        );
        let t: DateTime<Utc> = "2026-11-23T12:30:00Z".parse().unwrap_or_default();
        let t = t.with_timezone(&chrono_tz::Asia::Kolkata);
        assert_eq!(
            Text::new().weekday_time(t.fixed_offset()).done(),
            t.format("%A %H:%M").to_string()
        );
    }

    proptest! {
        /// Whatever the value, the text has the asked decimals and reads back
        /// within half a unit of the last one.
        #[test]
        fn fixed_is_within_half_a_unit(v in -1e6f64..1e6, digits in 0u32..5) {
            let text = Text::new().fixed(v, digits).done();
            let decimals = text.split('.').nth(1).map_or(0, str::len);
            prop_assert_eq!(decimals, digits as usize);
            let back: f64 = text.parse().unwrap_or(f64::NAN);
            let unit = 10f64.powi(-(digits as i32));
            prop_assert!((back - v).abs() <= 0.5 * unit * (1.0 + 1e-9) + 1e-9, "{} {}", v, text);
        }
    }
}

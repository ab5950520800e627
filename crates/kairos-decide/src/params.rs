use std::collections::BTreeMap;

use kairos_core::{Channel, LocalTimeOfDay};
use serde::{Deserialize, Serialize};

use crate::{DecideError, Result};

/// Local hours during which nothing is sent. `start > end` wraps midnight.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Local time "HH:MM".
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "21:00"))]
    pub start: LocalTimeOfDay,
    /// Local time "HH:MM".
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "08:00"))]
    pub end: LocalTimeOfDay,
}

impl QuietHours {
    pub fn check(self) -> Result<Self> {
        if self.start == self.end {
            return Err(DecideError::InvalidParam {
                name: "quiet_hours",
                reason: format!(
                    "start and end are both {}: give an interval, or null for none",
                    self.start
                ),
            });
        }
        Ok(self)
    }

    /// Whether a local minute of the day falls inside the quiet hours.
    pub fn contains(&self, minute_of_day: u32) -> bool {
        let (s, e) = (self.start.minutes(), self.end.minutes());
        if s < e {
            (s..e).contains(&minute_of_day)
        } else {
            minute_of_day >= s || minute_of_day < e
        }
    }
}

fn quiet_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<QuietHours>, D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Maybe {
        start: Option<LocalTimeOfDay>,
        end: Option<LocalTimeOfDay>,
    }
    match Option::<Maybe>::deserialize(d)? {
        None
        | Some(Maybe {
            start: None,
            end: None,
        }) => Ok(None),
        Some(Maybe {
            start: Some(start),
            end: Some(end),
        }) => Ok(Some(QuietHours { start, end })),
        Some(_) => Err(serde::de::Error::custom(
            "quiet_hours needs both start and end, or neither",
        )),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideParams {
    /// Quiet hours when a request does not say (`null` in a request means none).
    /// In configuration, an empty table `{}` means none.
    #[serde(default, deserialize_with = "quiet_or_empty")]
    pub quiet_hours: Option<QuietHours>,
    /// Default window length after `not_before`, in hours.
    pub default_window_hours: f64,
    /// Longest window a request may ask for, in days.
    pub max_window_days: f64,
    /// Local time used when nothing at all is known about anyone.
    pub default_send_time: LocalTimeOfDay,
    /// Zone assumed for customers without a valid one.
    pub default_timezone: String,
    /// How long after a send the customer typically responds, per channel, in hours.
    pub response_window_hours: BTreeMap<Channel, f64>,
    /// Frequency caps per channel and over all channels.
    #[serde(default)]
    pub caps: crate::caps::Caps,
    /// Which form of a trained response model scores slots.
    #[serde(default)]
    pub scorer: ResponseScorer,
    /// How long a customer typically stays around after their last
    /// activity, in minutes: a send while they may still be in that
    /// session is the more likely seen, by `exp(-minutes since the last
    /// activity / session_minutes)`. 0 turns it off.
    #[serde(default = "default_session_minutes")]
    pub session_minutes: f64,
}

fn default_session_minutes() -> f64 {
    DEFAULT_SESSION_MINUTES
}

/// [`DecideParams::session_minutes`] when configuration does not say.
pub const DEFAULT_SESSION_MINUTES: f64 = 15.0;

/// How a trained response model scores a slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseScorer {
    /// The customer's rate scaled by the slot's exposure relative to a
    /// typical time (`kairos_learn::exposure`): saturates, so the slots a
    /// search picks stay within what the logged sends showed.
    #[default]
    Exposure,
    /// The logistic regression on the log-lift and time of day.
    Logistic,
}

impl Default for DecideParams {
    fn default() -> Self {
        let hours = |c| match c {
            Channel::Email => 4.0,
            Channel::Push | Channel::Sms => 1.0,
            Channel::InApp | Channel::Web => 24.0,
        };
        Self {
            quiet_hours: Some(QuietHours {
                start: "21:00".parse().unwrap_or_else(|_| unreachable!()),
                end: "08:00".parse().unwrap_or_else(|_| unreachable!()),
            }),
            default_window_hours: 24.0,
            max_window_days: 31.0,
            default_send_time: "17:00".parse().unwrap_or_else(|_| unreachable!()),
            default_timezone: "UTC".into(),
            response_window_hours: Channel::ALL.iter().map(|&c| (c, hours(c))).collect(),
            caps: crate::caps::Caps::default(),
            scorer: ResponseScorer::default(),
            session_minutes: DEFAULT_SESSION_MINUTES,
        }
    }
}

/// Parameters that passed [`DecideParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidDecideParams {
    pub params: DecideParams,
    pub default_tz: chrono_tz::Tz,
    /// Response window per channel in quarter hours, by [`Channel::index`].
    pub response_quarters: [usize; 5],
}

impl std::ops::Deref for ValidDecideParams {
    type Target = DecideParams;
    fn deref(&self) -> &DecideParams {
        &self.params
    }
}

impl DecideParams {
    pub fn check(self) -> Result<ValidDecideParams> {
        if let Some(q) = self.quiet_hours {
            q.check()?;
        }
        let range = |name, v: f64, max: f64| {
            if v.is_finite() && v > 0.0 && v <= max {
                Ok(())
            } else {
                Err(DecideError::InvalidParam {
                    name,
                    reason: format!("must be in (0, {max}], got {v}"),
                })
            }
        };
        range(
            "default_window_hours",
            self.default_window_hours,
            24.0 * 366.0,
        )?;
        range("max_window_days", self.max_window_days, 366.0)?;
        if !(self.session_minutes.is_finite()
            && (0.0..=24.0 * 60.0).contains(&self.session_minutes))
        {
            return Err(DecideError::InvalidParam {
                name: "session_minutes",
                reason: format!("must be in [0, 1440], got {}", self.session_minutes),
            });
        }
        let default_tz = kairos_core::time::parse_tz(&self.default_timezone).map_err(|e| {
            DecideError::InvalidParam {
                name: "default_timezone",
                reason: e.to_string(),
            }
        })?;
        let mut response_quarters = [4usize; 5];
        for c in Channel::ALL {
            let h = self.response_window_hours.get(&c).copied().ok_or_else(|| {
                DecideError::InvalidParam {
                    name: "response_window_hours",
                    reason: format!("no value for channel {c}"),
                }
            })?;
            range("response_window_hours", h, 24.0 * 7.0)?;
            response_quarters[c.index()] = ((h * 4.0).round() as usize).max(1);
        }
        Ok(ValidDecideParams {
            params: self,
            default_tz,
            response_quarters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_wrap_midnight() {
        let q = QuietHours {
            start: "21:00".parse().unwrap_or_else(|_| unreachable!()),
            end: "08:00".parse().unwrap_or_else(|_| unreachable!()),
        };
        for (minute, quiet) in [
            (20 * 60 + 59, false),
            (21 * 60, true),
            (0, true),
            (7 * 60 + 59, true),
            (8 * 60, false),
        ] {
            assert_eq!(q.contains(minute), quiet, "{minute}");
        }
        let day = QuietHours {
            start: q.end,
            end: q.start,
        };
        assert!(day.contains(12 * 60) && !day.contains(22 * 60));
        assert!(QuietHours {
            start: q.start,
            end: q.start
        }
        .check()
        .is_err());
        assert!(DecideParams::default().check().is_ok());
        assert!(DecideParams {
            default_timezone: "Nowhere".into(),
            ..DecideParams::default()
        }
        .check()
        .is_err());
    }
}

//! Per-channel detector settings as a request spells them: `--window [CH:]WIN:LOW:HIGH`,
//! `--good-threshold [CH:]BIN`, `--event-width [CH:]TICKS` on the command line (repeatable;
//! without `CH:` for every channel), and in `configure` JSON `windows: [[WIN, LOW, HIGH] or
//! [CH, WIN, LOW, HIGH], ...]`, `good_threshold` and `event_width` as a number (every channel),
//! a `[CH, VALUE]` pair, or a list of either. They are applied in the order given, so a setting
//! for every channel followed by one for a single channel leaves that channel different.

use std::fmt;
use std::str::FromStr;

use acq_core::detector::{ChannelSetting, Channels};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A per-channel setting that does not parse; names the option and the text.
#[derive(Debug, thiserror::Error)]
#[error("{option} `{text}`: expected {syntax}")]
pub struct SettingSyntaxError {
    option: &'static str,
    text: String,
    syntax: &'static str,
}

fn numbers(text: &str) -> Option<Vec<u32>> {
    text.split(':')
        .map(|p| p.trim().parse::<u32>().ok())
        .collect()
}

fn channels(chan: Option<u32>) -> Channels {
    chan.map_or(Channels::All, Channels::One)
}

/// In-window scaler limits: `[CH:]WIN:LOW:HIGH`, inclusive bins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window(pub ChannelSetting);

impl Window {
    const SYNTAX: &'static str = "[CH:]WIN:LOW:HIGH, e.g. 0:500:700 or 2:0:500:700";

    fn from_numbers(n: &[u32]) -> Option<Self> {
        let (chan, rest) = match n.len() {
            3 => (None, n),
            4 => (Some(n[0]), &n[1..]),
            _ => return None,
        };
        Some(Window(ChannelSetting::Window {
            channels: channels(chan),
            window: rest[0],
            low: rest[1],
            high: rest[2],
        }))
    }
}

impl FromStr for Window {
    type Err = SettingSyntaxError;

    fn from_str(text: &str) -> Result<Self, SettingSyntaxError> {
        numbers(text)
            .and_then(|n| Window::from_numbers(&n))
            .ok_or_else(|| SettingSyntaxError {
                option: "--window",
                text: text.to_string(),
                syntax: Window::SYNTAX,
            })
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = Vec::<u32>::deserialize(d)
            .map_err(|_| D::Error::custom(format!("windows: each is {}", Window::JSON)))?;
        Window::from_numbers(&n)
            .ok_or_else(|| D::Error::custom(format!("windows: {n:?}: each is {}", Window::JSON)))
    }
}

impl Window {
    const JSON: &'static str = "[WIN, LOW, HIGH] or [CH, WIN, LOW, HIGH]";
}

/// A value for every channel or one: `[CH:]VALUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelValue {
    pub channel: Option<u32>,
    pub value: u32,
}

impl ChannelValue {
    fn parse(option: &'static str, text: &str) -> Result<Self, SettingSyntaxError> {
        let bad = || SettingSyntaxError {
            option,
            text: text.to_string(),
            syntax: "[CH:]VALUE, e.g. 40 or 2:40",
        };
        match numbers(text).ok_or_else(bad)?[..] {
            [value] => Ok(ChannelValue {
                channel: None,
                value,
            }),
            [chan, value] => Ok(ChannelValue {
                channel: Some(chan),
                value,
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for ChannelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.channel {
            Some(c) => write!(f, "{c}:{}", self.value),
            None => write!(f, "{}", self.value),
        }
    }
}

/// AllGood threshold: `[CH:]BIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoodThreshold(pub ChannelValue);

impl FromStr for GoodThreshold {
    type Err = SettingSyntaxError;

    fn from_str(text: &str) -> Result<Self, SettingSyntaxError> {
        ChannelValue::parse("--good-threshold", text).map(GoodThreshold)
    }
}

/// Event width for dead-time correction, in clock ticks: `[CH:]TICKS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventWidth(pub ChannelValue);

impl FromStr for EventWidth {
    type Err = SettingSyntaxError;

    fn from_str(text: &str) -> Result<Self, SettingSyntaxError> {
        ChannelValue::parse("--event-width", text).map(EventWidth)
    }
}

/// JSON of `good_threshold` / `event_width`: `N`, `[CH, N]`, or a list of these.
fn values_from_json<'de, D: Deserializer<'de>>(
    field: &str,
    d: D,
) -> Result<Vec<ChannelValue>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum One {
        All(u32),
        Chan([u32; 2]),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Json {
        One(One),
        Many(Vec<One>),
    }
    let value = |o: One| match o {
        One::All(value) => ChannelValue {
            channel: None,
            value,
        },
        One::Chan([chan, value]) => ChannelValue {
            channel: Some(chan),
            value,
        },
    };
    match Json::deserialize(d).map_err(|_| {
        D::Error::custom(format!(
            "{field}: needs N (every channel), [CH, N], or a list of these"
        ))
    })? {
        Json::One(o) => Ok(vec![value(o)]),
        Json::Many(v) => Ok(v.into_iter().map(value).collect()),
    }
}

pub(crate) fn good_thresholds_from_json<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<GoodThreshold>, D::Error> {
    values_from_json("good_threshold", d).map(|v| v.into_iter().map(GoodThreshold).collect())
}

pub(crate) fn event_widths_from_json<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<EventWidth>, D::Error> {
    values_from_json("event_width", d).map(|v| v.into_iter().map(EventWidth).collect())
}

/// Every per-channel setting of a request, in the order they are applied: windows, thresholds,
/// event widths, each in the order given.
pub(crate) fn channel_settings(
    windows: &[Window],
    good: &[GoodThreshold],
    widths: &[EventWidth],
) -> Vec<ChannelSetting> {
    let windows = windows.iter().map(|w| w.0);
    let good = good.iter().map(|g| ChannelSetting::GoodThreshold {
        channels: channels(g.0.channel),
        bin: g.0.value,
    });
    let widths = widths.iter().map(|w| ChannelSetting::EventWidth {
        channels: channels(w.0.channel),
        ticks: w.0.value,
    });
    windows.chain(good).chain(widths).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_spellings() {
        assert_eq!(
            "0:500:700".parse::<Window>().map(|w| w.0).ok(),
            Some(ChannelSetting::Window {
                channels: Channels::All,
                window: 0,
                low: 500,
                high: 700
            })
        );
        assert_eq!(
            "3:1:10:20".parse::<Window>().map(|w| w.0).ok(),
            Some(ChannelSetting::Window {
                channels: Channels::One(3),
                window: 1,
                low: 10,
                high: 20
            })
        );
        for bad in ["1:2", "1:2:3:4:5", "a:1:2", ""] {
            let e = bad.parse::<Window>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("--window `{bad}`")), "{e}");
        }
        assert_eq!(
            "40".parse::<GoodThreshold>().map(|g| g.0).ok(),
            Some(ChannelValue {
                channel: None,
                value: 40
            })
        );
        assert_eq!(
            "2:9".parse::<EventWidth>().map(|g| g.0).ok(),
            Some(ChannelValue {
                channel: Some(2),
                value: 9
            })
        );
        let e = "1:2:3".parse::<EventWidth>().unwrap_err().to_string();
        assert_eq!(
            e,
            "--event-width `1:2:3`: expected [CH:]VALUE, e.g. 40 or 2:40"
        );
    }

    #[test]
    fn settings_apply_in_order() {
        let s = channel_settings(
            &["0:1:2".parse().unwrap(), "1:0:3:4".parse().unwrap()],
            &["2:7".parse().unwrap()],
            &["9".parse().unwrap()],
        );
        let names: Vec<String> = s.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            names,
            [
                "window 0:1:2",
                "window 1:0:3:4",
                "good_threshold 2:7",
                "event_width 9"
            ]
        );
    }
}

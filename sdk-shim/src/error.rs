//! The error of every shim call: the code, the code's name and the message captured at failure.

use acq_core::detector::{ChannelSetting, DetectorError, ErrorClass, SettingError};

use crate::sys::{self, raw};

/// Longest message kept (the C shim's `X3S_MAX_MSG`, NUL excluded).
pub const MAX_MESSAGE: usize = raw::X3S_MAX_MSG as usize;

/// A failed shim or SDK call. Building one never allocates.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name} ({code}): {message}")]
pub struct X3sError {
    code: i32,
    name: &'static str,
    message: heapless::String<MAX_MESSAGE>,
}

impl X3sError {
    /// An error with an explicit message.
    pub fn new(code: i32, message: &str) -> Self {
        let mut m = heapless::String::new();
        for ch in message.chars() {
            if m.push(ch).is_err() {
                break;
            }
        }
        X3sError {
            code,
            name: sys::strerror(code),
            message: m,
        }
    }

    pub(crate) fn from_parts(code: i32, message: heapless::String<MAX_MESSAGE>) -> Self {
        X3sError {
            code,
            name: sys::strerror(code),
            message,
        }
    }

    /// The numeric code: XSP3 codes 0..-20, shim codes from -100.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The code's name, e.g. `XSP3_RANGE_CHECK` or `X3S_E_OVERRUN`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The text captured when the call failed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the requested frames were overwritten in the SDK's circular buffer.
    pub fn is_overrun(&self) -> bool {
        self.code == raw::X3S_E_OVERRUN
    }
}

impl DetectorError for X3sError {
    fn code(&self) -> i32 {
        self.code
    }

    fn name(&self) -> &str {
        self.name
    }

    fn message(&self) -> &str {
        &self.message
    }

    fn class(&self) -> ErrorClass {
        if self.is_overrun() {
            ErrorClass::Overrun
        } else {
            ErrorClass::Fatal
        }
    }
}

/// A per-channel setting that was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Outside what the detector has (channels, bins, windows, event-width range).
    #[error(transparent)]
    Invalid(#[from] SettingError),
    /// The shim or the SDK refused it (boxed: an error carries its whole message).
    #[error("{setting}: {error}")]
    Refused {
        setting: ChannelSetting,
        error: Box<X3sError>,
    },
}

/// Shim codes, re-exported with Rust names.
pub mod codes {
    use crate::sys::raw;

    pub const STATE: i32 = raw::X3S_E_STATE;
    pub const ARG: i32 = raw::X3S_E_ARG;
    pub const BUFSIZE: i32 = raw::X3S_E_BUFSIZE;
    pub const NOT_READY: i32 = raw::X3S_E_NOT_READY;
    pub const OVERRUN: i32 = raw::X3S_E_OVERRUN;
    pub const TIMEOUT: i32 = raw::X3S_E_TIMEOUT;
    pub const BACKEND: i32 = raw::X3S_E_BACKEND;
    /// `XSP3_ERROR`.
    pub const XSP3_ERROR: i32 = -1;
    /// `XSP3_RANGE_CHECK`.
    pub const XSP3_RANGE_CHECK: i32 = -6;
    /// `XSP3_ERR_DEV_NOT_FOUND`.
    pub const XSP3_ERR_DEV_NOT_FOUND: i32 = -9;
    /// `XSP3_CANNOT_OPEN_FILE`.
    pub const XSP3_CANNOT_OPEN_FILE: i32 = -10;
}

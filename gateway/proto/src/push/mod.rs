//! Push policy: what to send to APNs, FCM and the QUIC wake channel, when, and what to do with
//! the answer.
//!
//! This is the sans-IO half of Vigil's push path. It opens no connection and never reads the
//! clock; the shell in `vigil-gateway` (module `push`) owns the HTTP/2 and QUIC clients and
//! feeds their results back here. The split follows quinn-proto: inputs are `handle_*` calls
//! carrying `now`, outputs are drained with `poll_*`.
//!
//! - [`payload`]: builds provider requests from call/message notices (which cannot carry a SIP
//!   password: the notice types have no field for one) and checks their size.
//! - [`classify`]: maps APNs reasons and FCM status/errorCode to a [`classify::Verdict`].
//! - [`backoff`]: jittered exponential backoff bounded by the push's deadline.
//! - [`token`]: the APNs provider-token age policy (reuse 20–60 min, refresh on
//!   `ExpiredProviderToken`, never two refreshes within 20 minutes).
//! - [`queue`]: the dispatch queue: bounded per-credential priority lanes, deadlines, dedupe,
//!   retries and outcome events.

pub mod backoff;
pub mod classify;
pub mod payload;
pub mod queue;
pub mod token;

use std::fmt;

pub use classify::{ApnsReason, FailReason, FcmErrorCode, Verdict};
pub use payload::{
    ApnsPushType, ApnsRequest, CallEndReason, CallNotice, Expiration, FcmMessage, MessageNotice,
    Notice, PayloadError, WireRequest,
};
pub use queue::{
    DispatchConfig, Dispatcher, Outcome, PushEvent, PushRequest, SubmitError, Submitted, Transmit,
};
pub use token::{ExpiredDecision, ProviderTokenPolicy, TokenAction};

/// Identifier of one push accepted by the [`queue::Dispatcher`]; unique per dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushId(pub u64);

impl fmt::Display for PushId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "push-{}", self.0)
    }
}

/// One sending credential: an APNs key (team + key id) or certificate, an FCM service
/// account, or the wake channel. Pushes of different credentials never share a connection
/// and are served fairly against each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialId(pub u32);

/// Which push service carries a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Apple Push Notification service (HTTP/2).
    Apns,
    /// Firebase Cloud Messaging HTTP v1.
    Fcm,
    /// Vigil's own QUIC wake channel.
    Wake,
}

/// Priority class of a push; higher classes leave the queue first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Urgency {
    /// Renewal reminders: may wait.
    Reminder = 0,
    /// Messages and missed-call notices.
    Message = 1,
    /// Incoming calls (and their cancellation): worthless if late.
    Call = 2,
}

impl Urgency {
    /// Number of classes (lanes in a queue).
    pub const COUNT: usize = 3;
}

/// Errors in a device token or id handed to the push layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Empty token.
    #[error("device token is empty")]
    Empty,
    /// Longer than any provider issues.
    #[error("device token is {0} bytes, longer than allowed")]
    TooLong(usize),
    /// APNs tokens are hex strings.
    #[error("APNs device token is not hex")]
    NotHex,
    /// A character that cannot appear in a URL path or JSON string unescaped.
    #[error("device token contains a forbidden character")]
    BadChar,
}

/// A device's push token (APNs hex token, FCM registration token) or wake-channel device id.
///
/// Tokens are personal data: `Debug` and `Display` show only a short prefix.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceToken(String);

impl DeviceToken {
    /// Longest token accepted (FCM tokens are ~160–200 bytes; leave room).
    pub const MAX_LEN: usize = 1024;

    /// An APNs token: non-empty even-length hex (64 characters today; length treated as opaque).
    pub fn apns(s: &str) -> Result<Self, TokenError> {
        Self::check_common(s)?;
        if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::NotHex);
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// An FCM registration token or a wake device id: printable ASCII without spaces, quotes,
    /// slashes or backslashes.
    pub fn opaque(s: &str) -> Result<Self, TokenError> {
        Self::check_common(s)?;
        if !s
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'/' | b'?' | b'#'))
        {
            return Err(TokenError::BadChar);
        }
        Ok(Self(s.to_owned()))
    }

    fn check_common(s: &str) -> Result<(), TokenError> {
        if s.is_empty() {
            return Err(TokenError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(TokenError::TooLong(s.len()));
        }
        Ok(())
    }

    /// The token itself, for the wire only (never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Six characters identify a token in logs without revealing it.
        let head: String = self.0.chars().take(6).collect();
        write!(f, "{head}…")
    }
}

/// Where a push goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An iOS device via APNs; `bundle_id` is the app's bundle (the VoIP topic adds `.voip`).
    Apns {
        /// The device token.
        token: DeviceToken,
        /// The app's bundle identifier.
        bundle_id: String,
    },
    /// An Android device via FCM.
    Fcm {
        /// The registration token.
        token: DeviceToken,
    },
    /// A device connected to the QUIC wake channel.
    Wake {
        /// The device's wake-channel id.
        device: DeviceToken,
    },
}

impl Target {
    /// The provider serving this target.
    pub fn provider(&self) -> Provider {
        match self {
            Target::Apns { .. } => Provider::Apns,
            Target::Fcm { .. } => Provider::Fcm,
            Target::Wake { .. } => Provider::Wake,
        }
    }

    /// The device token or id.
    pub fn token(&self) -> &DeviceToken {
        match self {
            Target::Apns { token, .. } | Target::Fcm { token } => token,
            Target::Wake { device } => device,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_validated_and_redacted() {
        let t = DeviceToken::apns(&"AB".repeat(32)).unwrap();
        assert_eq!(t.expose(), "ab".repeat(32));
        assert_eq!(format!("{t:?}"), "ababab…");
        assert_eq!(DeviceToken::apns("abc"), Err(TokenError::NotHex));
        assert_eq!(DeviceToken::apns("zz"), Err(TokenError::NotHex));
        assert_eq!(DeviceToken::apns(""), Err(TokenError::Empty));
        assert_eq!(DeviceToken::opaque("a/b"), Err(TokenError::BadChar));
        assert_eq!(DeviceToken::opaque("a b"), Err(TokenError::BadChar));
        assert!(DeviceToken::opaque("fcm:APA91b-x_y").is_ok());
        assert!(matches!(
            DeviceToken::opaque(&"a".repeat(2000)),
            Err(TokenError::TooLong(2000))
        ));
    }
}

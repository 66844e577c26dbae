//! How the wire fails: a value that would not become bytes, bytes that do not match the
//! type asked for, and bytes that are not a well-formed message at all.

use std::fmt;

/// Why the wire could not turn a value into bytes, or bytes into a value or a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The user's value failed to serialize (its `Serialize` impl returned an error).
    Unserializable(String),
    /// The value does not have the shape of the type asked for: the path to the first
    /// difference and what differs, or a value out of the receiving type's range.
    Mismatch(String),
    /// The bytes are not a well-formed frame, header, hello or value: a broken or hostile
    /// peer.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unserializable(reason) | Self::Mismatch(reason) | Self::Malformed(reason) => {
                f.write_str(reason)
            }
        }
    }
}

impl std::error::Error for WireError {}

/// The error of coproq's own serializers and readers (`encode`, `shape::record`, `read`):
/// a message, which the caller turns into a [`WireError`] of the right kind.
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl serde::ser::Error for Message {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl serde::de::Error for Message {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

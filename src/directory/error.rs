//! Errors of the directory layer, classified by what the caller can do about them.

use ldap3::LdapError;

/// LDAP result codes the gateway reacts to (RFC 4511 appendix A, RFC 4528).
pub mod rc {
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const CONSTRAINT_VIOLATION: u32 = 19;
    pub const INVALID_SYNTAX: u32 = 21;
    pub const OBJECT_CLASS_VIOLATION: u32 = 65;
    pub const ALREADY_EXISTS: u32 = 68;
    pub const NOT_ALLOWED_ON_NON_LEAF: u32 = 66;
    pub const ASSERTION_FAILED: u32 = 122;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const INSUFFICIENT_ACCESS: u32 = 50;
    pub const BUSY: u32 = 51;
    pub const UNAVAILABLE: u32 = 52;
    pub const UNWILLING: u32 = 53;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const TIME_LIMIT_EXCEEDED: u32 = 3;
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DirError {
    /// No directory server could be reached, or the connection broke.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The directory did not answer in time.
    #[error("directory timeout")]
    Timeout,
    /// The server answered with a non-success result code.
    #[error("LDAP result {rc}: {text}")]
    Result { rc: u32, text: String },
    /// Anything else (a protocol surprise, a malformed answer).
    #[error("directory error: {0}")]
    Other(String),
}

impl DirError {
    pub fn rc(&self) -> Option<u32> {
        match self {
            DirError::Result { rc, .. } => Some(*rc),
            _ => None,
        }
    }

    pub fn is_unavailable(&self) -> bool {
        match self {
            DirError::Unavailable(_) | DirError::Timeout => true,
            DirError::Result { rc, .. } => matches!(*rc, rc::BUSY | rc::UNAVAILABLE),
            DirError::Other(_) => false,
        }
    }
}

impl From<LdapError> for DirError {
    fn from(e: LdapError) -> Self {
        match e {
            LdapError::LdapResult { result } => DirError::Result { rc: result.rc, text: result.text },
            LdapError::Timeout { .. } => DirError::Timeout,
            LdapError::Io { .. }
            | LdapError::OpSend { .. }
            | LdapError::ResultRecv { .. }
            | LdapError::IdScrubSend { .. }
            | LdapError::MiscSend { .. }
            | LdapError::EndOfStream => DirError::Unavailable(e.to_string()),
            other => DirError::Other(other.to_string()),
        }
    }
}

impl From<ldap3::LdapResult> for DirError {
    fn from(r: ldap3::LdapResult) -> Self {
        DirError::Result { rc: r.rc, text: r.text }
    }
}

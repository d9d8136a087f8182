//! Errors of the library-mode API.

/// A correlation id that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorrelationError {
    /// Empty or whitespace only.
    #[error("correlation id is blank; pass a non-empty id such as a request or order id")]
    Blank,
    /// Longer than [`MAX_CORRELATION_ID_LEN`](crate::MAX_CORRELATION_ID_LEN).
    #[error(
        "correlation id is {0} bytes long; the limit is 256: use a shorter id, or a hash of it"
    )]
    TooLong(usize),
    /// Contains a control character (newline, tab, NUL ...).
    #[error("correlation id contains a control character; use printable characters only")]
    ControlCharacter,
}

/// [`WrapOptions`](crate::WrapOptions) that break the contract of
/// [`assert_wrap_options_shape`](crate::assert_wrap_options_shape).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `intent` is empty after trimming.
    #[error("wrap options: intent is blank; say what this call is meant to achieve")]
    BlankIntent,
    /// `action` is empty after trimming.
    #[error(
        "wrap options: action is blank; give a stable operation id such as \"stripe.refund.create\""
    )]
    BlankAction,
    /// `correlation_id` was set but is not a usable id.
    #[error("wrap options: {0}")]
    CorrelationId(#[from] CorrelationError),
    /// An attribute key is empty after trimming.
    #[error("wrap options: an attribute key is blank; name every attribute")]
    BlankAttributeKey,
}

//! API errors: a status code, a TEI `error_type` and a message, sent as
//! `{"error": "...", "error_type": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The kinds of error TEI reports (`error_type`), each with its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is well-formed but breaks a limit (client batch size, input length): 413.
    Validation,
    /// Malformed JSON or wrong field types: 422.
    Invalid,
    /// Text that cannot be tokenized, token ids outside the vocabulary, unknown prompt: 422.
    Tokenizer,
    /// Empty input list or empty text: 422.
    Empty,
    /// More than `--max-concurrent-requests` requests in flight: 429.
    Overloaded,
    /// The loaded model cannot serve this route, or inference failed: 424.
    Backend,
    /// The model is still loading or warming up, or the server is stopping: 503.
    Unhealthy,
    /// No such route: 404.
    NotFound,
}

impl ErrorKind {
    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::Validation => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Invalid | ErrorKind::Tokenizer | ErrorKind::Empty => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorKind::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The `error_type` string (TEI's lowercase names).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Validation => "validation",
            ErrorKind::Invalid => "validation",
            ErrorKind::Tokenizer => "tokenizer",
            ErrorKind::Empty => "empty",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Backend => "backend",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::NotFound => "not_found",
        }
    }
}

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// What went wrong, in TEI's classification.
    pub kind: ErrorKind,
    /// A sentence for the client.
    pub message: String,
    /// Also write the OpenAI-style keys (`message`, `type`, `code`), for `/v1/*` routes.
    pub openai: bool,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), openai: false }
    }

    /// 413: a limit was exceeded.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }

    /// 422: the request cannot be processed as given.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// 422: the input cannot be tokenized as asked.
    pub fn tokenizer(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Tokenizer, message)
    }

    /// 422: an input is empty.
    pub fn empty(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Empty, message)
    }

    /// 424: the model cannot do this, or inference failed.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }

    /// Marks the error as coming from an OpenAI-compatible route.
    pub fn openai(mut self) -> Self {
        self.openai = true;
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.name())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let body = if self.openai {
            json!({
                "error": self.message,
                "error_type": self.kind.name(),
                "message": self.message,
                "type": self.kind.name(),
                "code": status.as_u16(),
            })
        } else {
            json!({ "error": self.message, "error_type": self.kind.name() })
        };
        (status, axum::Json(body)).into_response()
    }
}

/// A library error raised while validating a request (not during inference) is the client's.
impl From<modernbert::Error> for ApiError {
    fn from(e: modernbert::Error) -> Self {
        match e {
            modernbert::Error::Input(m) => ApiError::invalid(m),
            modernbert::Error::Tokenizer(m) => ApiError::tokenizer(m),
            other => ApiError::backend(other.to_string()),
        }
    }
}

//! API errors: a status code, a TEI `error_type` and a message, sent as
//! `{"error": "...", "error_type": "..."}`, or on the OpenAI routes (`/v1/*`, `/embeddings`) as
//! OpenAI's `{"error": {"message": "...", "type": "...", "param": null, "code": 413}}`.
//!
//! Every error answer of the server goes through [`ApiError`]: handlers return it, and the
//! router's outer middleware ([`crate::routes`]) turns the bodiless errors of the HTTP layer
//! (405, 408, ...) into one and re-shapes errors on OpenAI routes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The kinds of error TEI reports (`error_type`), each with its status code, plus the HTTP
/// layer's own (401, 404, 405, 408).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A malformed request to a route that is not TEI's (`POST /search`): 400.
    BadRequest,
    /// The request is well-formed but breaks a limit (client batch size, input length, body size): 413.
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
    /// The route exists but not for this method: 405.
    MethodNotAllowed,
    /// `--api-key` is set and the request lacks `Authorization: Bearer <key>`: 401.
    Unauthorized,
    /// The request body did not arrive within `--body-read-timeout`: 408.
    Timeout,
}

impl ErrorKind {
    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Validation => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Invalid | ErrorKind::Tokenizer | ErrorKind::Empty => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorKind::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Timeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The `error_type` string (TEI's lowercase names).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::BadRequest | ErrorKind::Validation | ErrorKind::Invalid => "validation",
            ErrorKind::Tokenizer => "tokenizer",
            ErrorKind::Empty => "empty",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Backend => "backend",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Timeout => "timeout",
        }
    }

    /// The `err` label of TEI's `te_request_failure` counter.
    pub fn failure_label(self) -> &'static str {
        match self {
            ErrorKind::BadRequest | ErrorKind::Validation | ErrorKind::Invalid | ErrorKind::Empty => "validation",
            ErrorKind::Tokenizer => "tokenization",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Backend => "inference",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::NotFound | ErrorKind::MethodNotAllowed => "route",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Timeout => "timeout",
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
    /// Write OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), for `/v1/*` routes.
    pub openai: bool,
    /// The `err` label of `te_request_failure` when it is not the kind's (TEI's `batch_size`, `model_type`).
    pub failure: Option<&'static str>,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), openai: false, failure: None }
    }

    /// 400: a malformed request (`POST /search`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
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

    /// 503: the model is not loaded yet, or the server is stopping.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unhealthy, message)
    }

    /// Marks the error as coming from an OpenAI-compatible route.
    pub fn openai(mut self) -> Self {
        self.openai = true;
        self
    }

    /// Sets the `err` label of `te_request_failure`.
    pub fn failure(mut self, label: &'static str) -> Self {
        self.failure = Some(label);
        self
    }

    /// The `err` label of `te_request_failure`.
    pub fn failure_label(&self) -> &'static str {
        self.failure.unwrap_or(self.kind.failure_label())
    }

    /// The JSON body: TEI's or OpenAI's shape.
    pub fn body(&self) -> serde_json::Value {
        if self.openai {
            json!({ "error": {
                "message": self.message,
                "type": self.kind.name(),
                "param": null,
                "code": self.kind.status().as_u16(),
            } })
        } else {
            json!({ "error": self.message, "error_type": self.kind.name() })
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.name())
    }
}

/// The JSON answer; the error itself rides along in the response's extensions, so that the
/// middleware can count it (`te_request_failure`) and re-shape it for OpenAI routes.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        if self.kind == ErrorKind::Unauthorized {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self);
        response
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape_nests_the_error() {
        let e = ApiError::validation("too many").openai();
        let body = e.body();
        assert_eq!(body["error"]["message"], "too many");
        assert_eq!(body["error"]["type"], "validation");
        assert_eq!(body["error"]["code"], 413);
        let tei = ApiError::validation("too many").body();
        assert_eq!((tei["error"].as_str(), tei["error_type"].as_str()), (Some("too many"), Some("validation")));
    }
}

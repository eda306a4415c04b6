//! Errors as TEI reports them: `{"error": "...", "error_type": "..."}` with TEI's status per
//! type, or OpenAI's `{"message", "code", "type"}` on the OpenAI routes (as TEI does there).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// TEI's error types; the names are TEI's JSON values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ErrorType {
    Unhealthy,
    Backend,
    Overloaded,
    Validation,
    Tokenizer,
    Empty,
    /// Not in TEI (which answers 401 without a body); same shape here.
    Unauthorized,
    /// A bug in xlmr caught before it reached the client; not in TEI.
    Internal,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error_type: ErrorType,
    pub message: String,
    /// Answer in OpenAI's shape instead of TEI's.
    pub openai: bool,
}

impl ApiError {
    /// An error with TEI's status for its type.
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        let status = match error_type {
            ErrorType::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Backend => StatusCode::FAILED_DEPENDENCY,
            ErrorType::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorType::Validation | ErrorType::Tokenizer => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Empty => StatusCode::BAD_REQUEST,
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, error_type, message: message.into(), openai: false }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// TEI words validation messages this way ("Input validation error: ...").
    pub fn validation(message: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorType::Validation, format!("Input validation error: {message}"))
    }

    pub fn empty(message: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorType::Empty, format!("Input validation error: {message}"))
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::new(ErrorType::Internal, format!("internal error (a bug in xlmr, please report it): {message}"))
    }

    pub fn openai(mut self) -> Self {
        self.openai = true;
        self
    }
}

impl From<xlmr::Error> for ApiError {
    fn from(e: xlmr::Error) -> Self {
        let message = e.to_string().replace('\n', " ");
        match e {
            xlmr::Error::Tokenizer(_) => ApiError::new(ErrorType::Tokenizer, message),
            xlmr::Error::Input(_) | xlmr::Error::InvalidArgument(_) => ApiError::validation(message),
            _ => ApiError::new(ErrorType::Backend, message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.openai {
            serde_json::json!({ "message": self.message, "code": self.status.as_u16(), "type": self.error_type })
        } else {
            serde_json::json!({ "error": self.message, "error_type": self.error_type })
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// A JSON request body, whatever its Content-Type (curl's `-d` sends a form type):
/// over the payload limit is 413, malformed JSON 400, well-formed JSON of the wrong shape
/// 422, each in TEI's error shape.
pub fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let error_type = if status == StatusCode::PAYLOAD_TOO_LARGE { ErrorType::Validation } else { ErrorType::Empty };
        ApiError::new(error_type, format!("request body: {}", r.body_text())).with_status(status)
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::validation(format!("request JSON: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::validation(format!("request body is not valid JSON: {e}")).with_status(StatusCode::BAD_REQUEST)
            }
        }
    })
}

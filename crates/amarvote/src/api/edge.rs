//! What every route of the HTTP edge shares: the one error shape, body parsers that name
//! the field at fault, the bearer-token checks (one administrator rule for both APIs), and
//! the middleware that gives axum's own rejections the same shape.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use super::openapi::ErrorBody;
use crate::service::{same_secret, App, ServiceError};

pub type AppState = Arc<App>;

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For a 429 or a 503: when the client may try again (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
    /// The request field at fault, when there is one.
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
            field: None,
        }
    }

    /// A 400 naming the field at fault.
    pub fn bad_field(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field),
            ..ApiError::bad_request(message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            retry_after: None,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            status: self.status.as_u16(),
            field: self.field.map(str::to_owned),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServiceError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::Unavailable(inner) => {
                tracing::warn!(error = %inner, "answered 503: the database failed, perhaps for a moment");
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::Internal(inner) => {
                tracing::error!(error = %format!("{inner:#}"), "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let retry_after = match &e {
            ServiceError::RateLimited { retry_after, .. } => Some(*retry_after),
            ServiceError::Unavailable(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        };
        let message = match e {
            ServiceError::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        ApiError {
            status,
            message,
            retry_after,
            field: None,
        }
    }
}

impl From<crate::ports::StoreError> for ApiError {
    fn from(e: crate::ports::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose errors are JSON too, naming the field at fault.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError {
                status: e.status(),
                retry_after: None,
                message: e.body_text(),
                field: None,
            })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body; the error names the field at fault. Handlers that authorize
/// first take the raw body and call this after the check.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path == "?" {
            ApiError::bad_request(format!("malformed body: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

/// A body of reference JSON (group elements as hex text); the error names the field at fault.
pub fn reference_body<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    electionguard::json::from_json(text).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn require_bearer(headers: &HeaderMap) -> ApiResult<&str> {
    bearer(headers).ok_or(ApiError {
        status: StatusCode::UNAUTHORIZED,
        retry_after: None,
        message: "missing Authorization: Bearer token".into(),
        field: None,
    })
}

/// The one administrator rule of every route: 401 without a bearer token, 403
/// with a wrong one; an empty configured token admits nobody.
pub fn check_admin_token(expected: &str, headers: &HeaderMap) -> ApiResult<()> {
    let presented = require_bearer(headers)?;
    if !expected.is_empty() && same_secret(presented, expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the token given is not the administrator token",
        ))
    }
}

/// Gives every error answer the one JSON shape: axum's own rejections (a malformed path
/// parameter, a body over the size limit, a method the route does not take) are plain
/// text, and are rewritten here with their status and message.
pub async fn json_errors(request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = match String::from_utf8_lossy(&text).trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        text => text.to_string(),
    };
    let mut rewritten = ApiError {
        status,
        message,
        retry_after: None,
        field: None,
    }
    .into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// The administrator, proven by the bearer token before anything else of the request is
/// read: 401 without a token, 403 with another.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> ApiResult<Admin> {
        check_admin_token(&app.admin_token, &parts.headers).map(|()| Admin)
    }
}

/// A bearer token (a voter's credential, a guardian's token), present but not yet checked:
/// the use case decides whose it is. 401 without one.
pub struct Bearer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Bearer> {
        require_bearer(&parts.headers).map(|token| Bearer(token.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_out_of_reach_answers_503_with_a_time_to_try_again() {
        let unavailable = ServiceError::Unavailable(crate::ports::store::StoreError::Backend {
            message: "connection refused".into(),
            transient: true,
        });
        let response = ApiError::from(unavailable).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}

//! The HTTP API (axum). Handlers parse and authorize, call a use case in
//! [`crate::service`], and answer; anything heavy is a job (202 + job id) done by the
//! workers. Every error, here and in the referendum's routes, is one JSON shape
//! `{"error": …, "status": …}` (with `"field"` when one field of the request is at
//! fault, and `Retry-After` on a 429) with a 4xx or 5xx status; administrator
//! routes answer 401 without a bearer token and 403 with a wrong one.

// The route modules: utoipa's `path` macro writes the types it is given (parameters,
// bodies) as qualified paths in the code it generates, which the workspace lint would flag.
#[allow(unused_qualifications)]
mod ballots;
#[allow(unused_qualifications)]
mod ceremony;
#[allow(unused_qualifications)]
mod elections;
#[allow(unused_qualifications)]
mod jobs;
#[allow(unused_qualifications)]
mod record;
#[allow(unused_qualifications)]
pub mod referendum;
#[allow(unused_qualifications)]
mod remote_decryption;

mod edge;
pub mod http_server;
pub mod openapi;
mod params;
pub mod rate_limit;
mod routes;
mod tar;
mod web;

pub use edge::{
    bearer, check_admin_token, json_errors, parse_body, reference_body, require_admin,
    require_bearer, ApiError, ApiJson, ApiResult, AppState,
};
pub use routes::{contract, metrics, operations_routes, router};

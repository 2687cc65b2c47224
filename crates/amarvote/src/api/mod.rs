//! The one HTTP edge of the election service and the referendum (axum). Handlers take
//! typed extractors (the [`Admin`] and a [`Bearer`] token before anything else, typed path
//! parameters, bodies that name the field at fault), call a use case, and answer typed
//! bodies; anything heavy is a job (202 + job id) done by the workers. Every error is one
//! JSON shape `{"error": …, "status": …}` (with `"field"` when one field of the request is
//! at fault, and `Retry-After` on a 429 and on a 503: a role still waiting for its
//! services, [`start_gate`], or a database out of reach for now); administrator routes answer 401 without a bearer
//! token and 403 with a wrong one. The routes' descriptions are the contract
//! (`/api/openapi.json`, [`openapi`]).

// The route modules: utoipa's `path` macro writes the types it is given (parameters,
// bodies) as qualified paths in the code it generates, which the workspace lint would flag.
#[allow(unused_qualifications)]
pub mod ballots;
#[allow(unused_qualifications)]
mod ceremony;
#[allow(unused_qualifications)]
pub mod elections;
#[allow(unused_qualifications)]
pub mod jobs;
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
pub mod request_metrics;
mod routes;
pub mod start_gate;
mod tar;
/// TLS on the HTTP edge.
pub mod tls;
mod web;

pub use edge::{
    check_admin_token, json_errors, parse_body, reference_body, Admin, ApiError, ApiJson,
    ApiResult, AppState, Bearer,
};
pub use routes::{contract, contract_route, metrics, operations_routes, router, Served};

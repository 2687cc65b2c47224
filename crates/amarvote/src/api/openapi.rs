//! The API's contract: an OpenAPI 3.1 document generated from the route and type
//! definitions (utoipa), assembled in [`super::routes::contract`] and served at
//! `/api/openapi.json`.
//!
//! Each handler declares its parameters, body and the answers it gives itself; routes are
//! registered through `utoipa_axum::routes!`, so a route cannot exist without its
//! description. What the HTTP edge answers for every route of a kind is added here, once:
//! a malformed path parameter (400) and an unknown id (404) wherever there is a path
//! parameter, a malformed or oversized body (400, 413) wherever there is a body, 401 and
//! 403 wherever a bearer token is required, and 429 on the rate-limited routes.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Response, ResponseBuilder};
use utoipa::ToSchema;

/// The one error shape of both APIs.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "AmarVote",
        description = "A verifiable election service (ElectionGuard 1.0) and a high-volume \
                       referendum pipeline. Errors have one shape, `ErrorBody`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody))
)]
pub(super) struct Base;

/// The name of the bearer-token security scheme (administrator, guardian or voter token).
pub const BEARER: &str = "bearer";

/// Adds what the edge answers; `limited` are the paths behind a per-client rate limit.
pub(super) fn add_edge_answers(document: &mut OpenApi, limited: &[String]) {
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (path, item) in document.paths.paths.iter_mut() {
        let limited = limited.contains(path);
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_operation_answers(operation, limited);
        }
    }
}

/// Answers that make ids, and where each id is found in them: the contract's links lead
/// from them to every operation whose path parameters they give (clients, and stateful
/// testing, follow them from a created election to its ballots, guardians and jobs).
const ID_SOURCES: [IdSource; 2] = [
    IdSource {
        operation: "create",
        status: "201",
        ids: &[
            ("id", "$response.body#/election_id"),
            ("guardian", "$response.body#/guardians/0/guardian_id"),
        ],
    },
    IdSource {
        operation: "start",
        status: "202",
        ids: &[
            ("job", "$response.body#/job_id"),
            ("id", "$request.path.id"),
        ],
    },
];

struct IdSource {
    operation: &'static str,
    status: &'static str,
    /// Path parameter names, and where their values are (OpenAPI runtime expressions).
    ids: &'static [(&'static str, &'static str)],
}

/// Written into the JSON: utoipa 5 writes a link's `operationId` as `operation_id`.
pub(super) fn add_links(document: &mut Value) {
    let mut targets = Vec::new();
    for item in document["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for operation in item.as_object().into_iter().flat_map(|i| i.values()) {
            let names: Vec<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            if let Some(id) = operation["operationId"].as_str() {
                targets.push((id.to_owned(), names));
            }
        }
    }
    for IdSource {
        operation: source,
        status,
        ids: values,
    } in ID_SOURCES
    {
        let links: serde_json::Map<String, Value> = targets
            .iter()
            .filter(|(target, names)| {
                target != source
                    && !names.is_empty()
                    && names.iter().all(|n| values.iter().any(|(v, _)| v == n))
            })
            .map(|(target, names)| {
                let parameters: serde_json::Map<String, Value> = values
                    .iter()
                    .filter(|(v, _)| names.iter().any(|n| n == v))
                    .map(|(name, value)| (name.to_string(), Value::from(*value)))
                    .collect();
                let link = serde_json::json!({ "operationId": target, "parameters": parameters });
                (target.clone(), link)
            })
            .collect();
        if let Some(answer) = operation_by_id(document, source)
            .and_then(|o| o["responses"].get_mut(status))
            .and_then(Value::as_object_mut)
        {
            answer.insert("links".into(), Value::Object(links));
        }
    }
}

fn operation_by_id<'d>(document: &'d mut Value, id: &str) -> Option<&'d mut Value> {
    document["paths"]
        .as_object_mut()?
        .values_mut()
        .flat_map(|item| {
            item.as_object_mut()
                .into_iter()
                .flat_map(|i| i.values_mut())
        })
        .find(|operation| operation["operationId"] == id)
}

fn add_operation_answers(operation: &mut Operation, limited: bool) {
    let has_path_parameter = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let has_query_parameter = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut answers: Vec<(&str, &str)> = Vec::new();
    if has_path_parameter || has_query_parameter || operation.request_body.is_some() {
        answers.push((
            "400",
            "The request is malformed; `field` names the part at fault.",
        ));
    }
    if has_path_parameter {
        answers.push(("404", "No such object."));
    }
    if operation.request_body.is_some() {
        answers.push(("413", "The body is larger than the server accepts."));
    }
    if secured {
        answers.push(("401", "No bearer token."));
        answers.push(("403", "The bearer token is not one this operation accepts."));
    }
    if limited {
        answers.push((
            "429",
            "Too many requests from this client; see `Retry-After`.",
        ));
    }
    answers.push((
        "503",
        "The process is starting and waits for a service it needs (named in `error`), or its \
         database is busy or out of reach for now; see `Retry-After`.",
    ));
    for (status, description) in answers {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_answer(description));
    }
}

fn error_answer(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))))
                .build(),
        )
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use crate::api::routes::{contract, contract_json, Served};

    #[test]
    fn every_route_of_both_apis_is_in_the_contract() {
        let paths = &contract(Served::Both).paths.paths;
        for route in [
            "/api/elections",
            "/api/elections/{id}/jobs",
            "/api/jobs/{job}",
            "/api/elections/{id}/ballots/encrypt",
            "/api/elections/{id}/guardians/{guardian}/challenge-answers",
            "/api/elections/{id}/record.tar",
            "/api/v1/vote",
            "/api/v1/votes/status",
            "/api/v1/admin/laws",
            "/api/v1/health",
        ] {
            assert!(paths.contains_key(route), "{route} missing");
        }
    }

    #[test]
    fn each_role_publishes_the_contract_of_what_it_serves() {
        let paths =
            |served| -> Vec<String> { contract(served).paths.paths.keys().cloned().collect() };
        let (election, referendum) = (paths(Served::Election), paths(Served::Referendum));
        assert!(
            election.iter().all(|p| !p.starts_with("/api/v1/")),
            "{election:?}"
        );
        assert!(
            referendum.iter().all(|p| p.starts_with("/api/v1/")),
            "{referendum:?}"
        );
        assert!(!election.is_empty() && !referendum.is_empty());
        let mut both = [election, referendum].concat();
        both.sort();
        assert_eq!(both, paths(Served::Both));
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in &contract(Served::Both).paths.paths {
            for operation in [&item.get, &item.post].into_iter().flatten() {
                let id = operation.operation_id.clone().unwrap_or_default();
                assert!(
                    seen.insert(id.clone()),
                    "{path}: operation id {id} repeated"
                );
            }
        }
    }

    #[test]
    fn every_path_parameter_is_declared_and_every_error_has_the_one_shape() {
        let document = contract_json(Served::Both);
        for (path, item) in document["paths"].as_object().unwrap() {
            let named: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            for (method, operation) in item.as_object().unwrap() {
                let declared: Vec<&str> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                assert_eq!(declared, named, "{method} {path}: path parameters");
                for (status, answer) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('4') {
                        let schema = &answer["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(
                            schema, "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}

//! The OpenAPI 3.1 description of the election API, served at `/api/openapi.json`.

use axum::http::header;
use axum::response::IntoResponse;

const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_is_valid_json_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for route in [
            "/api/elections",
            "/api/elections/{id}/jobs",
            "/api/jobs/{job}",
            "/api/elections/{id}/ballots/encrypt",
            "/api/elections/{id}/guardians/{guardian}/challenge-answers",
            "/api/v1/vote",
        ] {
            assert!(paths.contains_key(route), "{route} missing");
        }
    }
}

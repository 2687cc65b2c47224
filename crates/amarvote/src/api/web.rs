//! The web pages for administrators, guardians, voters and auditors: one HTML shell, a
//! script and a style sheet, built into the binary so `amarvote serve` needs nothing
//! beside it. The pages only call the public HTTP API. The voter, results and referendum
//! pages speak English, French or Bengali from one message catalog per language.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");

/// The message catalogs, by the file name the script asks for.
const CATALOGS: [(&str, &str); 3] = [
    ("en.json", include_str!("../../web/i18n/en.json")),
    ("fr.json", include_str!("../../web/i18n/fr.json")),
    ("bn.json", include_str!("../../web/i18n/bn.json")),
];

/// Scripts and styles come from this server only: no inline script can run.
const POLICY: &str =
    "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/assets/i18n/{file}", get(catalog))
}

/// A language's catalog; any other name is 404 (the name never reaches a file system).
async fn catalog(Path(file): Path<String>) -> Response {
    match CATALOGS.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => asset(body, "application/json; charset=utf-8"),
        None => super::edge::ApiError::new(
            StatusCode::NOT_FOUND,
            "no message catalog of that name: en.json, fr.json or bn.json",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn the_shell_loads_the_script_and_style_it_is_served_with() {
        assert!(INDEX.contains(r#"src="/assets/app.js""#));
        assert!(INDEX.contains(r#"href="/assets/style.css""#));
        assert!(
            !INDEX.contains("<script>"),
            "inline scripts break the policy"
        );
    }

    fn messages(file: &str) -> BTreeMap<String, String> {
        let (_, body) = CATALOGS.iter().find(|(name, _)| *name == file).unwrap();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn placeholders(text: &str) -> BTreeSet<&str> {
        text.split('{')
            .skip(1)
            .filter_map(|part| part.split_once('}').map(|(name, _)| name))
            .collect()
    }

    #[test]
    fn every_language_says_every_message_with_the_same_placeholders() {
        let english = messages("en.json");
        for file in ["fr.json", "bn.json"] {
            let other = messages(file);
            let missing: Vec<_> = english.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<_> = other.keys().filter(|k| !english.contains_key(*k)).collect();
            assert!(missing.is_empty(), "{file} lacks {missing:?}");
            assert!(extra.is_empty(), "{file} has keys English lacks: {extra:?}");
            for (key, text) in &other {
                assert!(!text.trim().is_empty(), "{file}: {key} is empty");
                assert_eq!(
                    placeholders(text),
                    placeholders(&english[key]),
                    "{file}: {key} fills other blanks than English"
                );
            }
        }
    }

    /// Keys the script builds at run time from the API's own words.
    const BUILT_KEYS: [&str; 3] = ["state.", "ballot.", "ref.status."];

    #[test]
    fn the_pages_ask_only_for_messages_english_has_and_english_has_none_unused() {
        let english = messages("en.json");
        let pages = format!("{SCRIPT}{INDEX}");
        let asked: BTreeSet<&str> = pages
            .split(['\'', '"', '`'])
            .filter(|word| {
                word.contains('.')
                    && word
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                    && english
                        .keys()
                        .any(|k| k.split('.').next() == word.split('.').next())
            })
            .collect();
        for key in &asked {
            // A plural message is asked for by its base and found as `.one` and `.other`.
            let found = english.contains_key(*key) || english.contains_key(&format!("{key}.other"));
            assert!(found, "the pages ask for {key}, which en.json lacks");
        }
        for key in english.keys() {
            let base_asked =
                |suffix: &str| key.strip_suffix(suffix).is_some_and(|b| asked.contains(b));
            let used = asked.contains(key.as_str())
                || BUILT_KEYS.iter().any(|prefix| key.starts_with(prefix))
                || [".link", ".one", ".other"].into_iter().any(base_asked);
            assert!(used, "en.json has {key}, which no page asks for");
        }
        for state in [
            "key_ceremony",
            "open",
            "closed",
            "tallied",
            "decrypted",
            "published",
        ] {
            assert!(
                english.contains_key(&format!("state.{state}")),
                "no name for {state}"
            );
        }
        for status in [
            "accepted",
            "duplicate.one",
            "duplicate.other",
            "not_eligible",
            "locked",
        ] {
            assert!(
                english.contains_key(&format!("ref.status.{status}")),
                "no text for {status}"
            );
        }
    }
}

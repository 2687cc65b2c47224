//! Identifiers. Every one may become a file name, a key or a query parameter, so those
//! a voter or an administrator chooses are checked ([`check_id`]), and the ids the service
//! makes are types of their own ([`ElectionId`], [`JobId`]): they are made at random or
//! parsed, and a row or a queue message that names something else is refused where it is
//! read.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// A random identifier with a readable prefix (`job-3f9a…`).
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    openssl::rand::rand_bytes(&mut bytes).expect("the system random generator works");
    format!("{prefix}-{}", hex(&bytes))
}

/// Checks an identifier that a voter or an administrator chose: it may become a file
/// name, a key or a query parameter, so it is 1 to 64 of `a-z 0-9 _ -` and nothing else.
/// Lower case only: on a case-insensitive file system `B-1` and `b-1` would be one file
/// of the record. The error names the field.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if (1..=64).contains(&value.len()) && value.chars().all(plain) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be 1 to 64 characters of a-z, 0-9, _ and -"
        ))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

macro_rules! service_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $field:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A new random id (`{prefix}-` and 24 hex digits).
            pub fn random() -> Self {
                $name(new_id($prefix))
            }

            /// The id named by `text`, if it could be one.
            pub fn parse(text: &str) -> Result<Self, String> {
                check_id($field, text)?;
                Ok($name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(text: String) -> Result<Self, String> {
                check_id($field, &text)?;
                Ok($name(text))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

service_id!(
    /// An election, as its creation named it.
    ElectionId,
    "election",
    "election_id"
);

service_id!(
    /// A job, as its start named it.
    JobId,
    "job",
    "job_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = new_id("job");
        assert!(a.starts_with("job-") && a.len() == 28);
        assert_ne!(a, new_id("job"));
    }
    #[test]
    fn identifiers_that_could_leave_a_directory_or_a_key_are_refused() {
        for good in ["ballot-1", "a_b-9", &"x".repeat(64), &new_id("ballot")] {
            assert_eq!(check_id("id", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "/../manifest",
            "..",
            "a/b",
            "a\\b",
            "a\0b",
            "a b",
            "é",
            "a.json",
            "Ballot-1",
            &"x".repeat(65),
            "a\nb",
        ] {
            let refused = check_id("object_id", bad).unwrap_err();
            assert!(refused.starts_with("object_id "), "{bad:?}: {refused}");
        }
    }

    #[test]
    fn a_service_id_is_made_at_random_or_parsed_and_refused_otherwise() {
        let job = JobId::random();
        assert!(job.starts_with("job-"));
        assert_eq!(JobId::parse(&job).unwrap(), job);
        for hostile in ["", "../jobs", "job 1", "JOB-1", "a\0b"] {
            assert!(JobId::parse(hostile).is_err(), "{hostile:?}");
            let quoted = serde_json::to_string(hostile).unwrap();
            assert!(
                serde_json::from_str::<JobId>(&quoted).is_err(),
                "{hostile:?}"
            );
        }
        let round: ElectionId =
            serde_json::from_str(&serde_json::to_string(&ElectionId::random()).unwrap()).unwrap();
        assert!(round.starts_with("election-"));
    }
}

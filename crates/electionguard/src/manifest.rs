//! The election manifest (what is on the ballot) and its crypto hash.
//!
//! Types mirror the reference JSON field for field, so a manifest round-trips to identical
//! bytes; `crypto_hash` reproduces the reference's `Manifest.crypto_hash()`, which enters
//! the base hash and every ballot.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::group::ElementModQ;
use crate::hash;
use crate::hash::HashElem;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Language {
    pub value: String,
    pub language: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternationalizedText {
    pub text: Vec<Language>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnotatedString {
    pub annotation: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactInformation {
    pub address_line: Option<Vec<String>>,
    pub email: Option<Vec<AnnotatedString>>,
    pub phone: Option<Vec<AnnotatedString>>,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeopoliticalUnit {
    pub object_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub unit_type: String,
    pub contact_information: Option<ContactInformation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub object_id: String,
    pub name: InternationalizedText,
    pub abbreviation: Option<String>,
    pub color: Option<String>,
    pub logo_uri: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub object_id: String,
    pub name: InternationalizedText,
    pub party_id: Option<String>,
    pub image_uri: Option<String>,
    pub is_write_in: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionDescription {
    pub object_id: String,
    pub sequence_order: u64,
    pub candidate_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestDescription {
    pub object_id: String,
    pub sequence_order: u64,
    pub electoral_district_id: String,
    pub vote_variation: String,
    pub number_elected: u64,
    pub votes_allowed: Option<u64>,
    pub name: String,
    pub ballot_selections: Vec<SelectionDescription>,
    pub ballot_title: Option<InternationalizedText>,
    pub ballot_subtitle: Option<InternationalizedText>,
    /// Present on candidate contests only, as the reference writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_party_ids: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BallotStyle {
    pub object_id: String,
    pub geopolitical_unit_ids: Option<Vec<String>>,
    pub party_ids: Option<Vec<String>>,
    pub image_uri: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub election_scope_id: String,
    pub spec_version: String,
    #[serde(rename = "type")]
    pub election_type: String,
    pub start_date: String,
    pub end_date: String,
    pub geopolitical_units: Vec<GeopoliticalUnit>,
    pub parties: Vec<Party>,
    pub candidates: Vec<Candidate>,
    pub contests: Vec<ContestDescription>,
    pub ballot_styles: Vec<BallotStyle>,
    pub name: Option<InternationalizedText>,
    pub contact_information: Option<ContactInformation>,
}

/// Manifest objects enter `hash_elems` through their own crypto hash.
macro_rules! hashed_by_crypto_hash {
    ($($t:ty),*) => {$(
        impl HashElem for $t {
            fn hash_text(&self) -> Cow<'_, str> {
                Cow::Owned(self.crypto_hash().to_hex())
            }
        }
    )*};
}
hashed_by_crypto_hash!(
    Language,
    InternationalizedText,
    AnnotatedString,
    ContactInformation,
    GeopoliticalUnit,
    Party,
    Candidate,
    SelectionDescription,
    ContestDescription,
    BallotStyle,
    Manifest
);

impl Language {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(self.value, self.language)
    }
}

impl InternationalizedText {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(self.text)
    }
}

impl AnnotatedString {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(self.annotation, self.value)
    }
}

impl ContactInformation {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(self.name, self.address_line, self.email, self.phone)
    }
}

impl GeopoliticalUnit {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(
            self.object_id,
            self.name,
            self.unit_type,
            self.contact_information
        )
    }
}

impl Party {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(
            self.object_id,
            self.name,
            self.abbreviation,
            self.color,
            self.logo_uri
        )
    }
}

impl Candidate {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(self.object_id, self.name, self.party_id, self.image_uri)
    }
}

impl SelectionDescription {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(self.object_id, self.sequence_order, self.candidate_id)
    }
}

impl ContestDescription {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(
            self.object_id,
            self.sequence_order,
            self.electoral_district_id,
            self.vote_variation,
            self.ballot_title,
            self.ballot_subtitle,
            self.name,
            self.number_elected,
            self.votes_allowed,
            self.ballot_selections
        )
    }

    /// The reference's placeholder selections: one per seat, numbered after the last selection.
    /// A record's manifest is untrusted input: more seats than selections (which
    /// `validate` refuses) yields no more placeholders than selections, and orders that
    /// would overflow are left out, so this never panics or allocates without bound.
    pub fn placeholder_selections(&self) -> Vec<SelectionDescription> {
        let max = self
            .ballot_selections
            .iter()
            .map(|s| s.sequence_order)
            .max()
            .unwrap_or(0);
        let seats = self.number_elected.min(self.ballot_selections.len() as u64);
        (0..seats)
            .filter_map(|i| max.checked_add(1 + i))
            .map(|order| {
                let id = format!("{}-{}", self.object_id, order);
                SelectionDescription {
                    object_id: format!("{id}-placeholder"),
                    sequence_order: order,
                    candidate_id: format!("{id}-candidate"),
                }
            })
            .collect()
    }
}

impl BallotStyle {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(
            self.object_id,
            self.geopolitical_unit_ids,
            self.party_ids,
            self.image_uri
        )
    }
}

/// Vote variations the reference can encrypt.
const SUPPORTED_VOTE_VARIATIONS: &[&str] = &[
    "one_of_m",
    "approval",
    "majority",
    "n_of_m",
    "plurality",
    "super_majority",
];

/// A manifest that is not usable for an election, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("date {0:?} is not an ISO 8601 date-time")]
    BadDate(String),
    #[error("contest {contest}: {problem}")]
    Contest { contest: String, problem: String },
    #[error("{0}")]
    Structure(String),
}

impl Manifest {
    pub fn crypto_hash(&self) -> ElementModQ {
        hash!(
            self.election_scope_id,
            self.election_type,
            iso_utc(&self.start_date).unwrap_or_else(|| self.start_date.clone()),
            iso_utc(&self.end_date).unwrap_or_else(|| self.end_date.clone()),
            self.name,
            self.contact_information,
            self.geopolitical_units,
            self.parties,
            self.contests,
            self.ballot_styles
        )
    }

    /// The reference's `Manifest.is_valid()`, with each failure named.
    pub fn validate(&self) -> Result<(), ManifestError> {
        for date in [&self.start_date, &self.end_date] {
            iso_utc(date).ok_or_else(|| ManifestError::BadDate(date.clone()))?;
        }
        let units = unique_ids(
            self.geopolitical_units.iter().map(|u| &u.object_id),
            "geopolitical unit",
        )?;
        unique_ids(
            self.ballot_styles.iter().map(|s| &s.object_id),
            "ballot style",
        )?;
        for style in &self.ballot_styles {
            let ids = style.geopolitical_unit_ids.as_ref().ok_or_else(|| {
                ManifestError::Structure(format!(
                    "ballot style {} has no geopolitical units",
                    style.object_id
                ))
            })?;
            if let Some(id) = ids.iter().find(|id| !units.contains(id)) {
                return Err(ManifestError::Structure(format!(
                    "ballot style {} names unknown unit {id}",
                    style.object_id
                )));
            }
        }
        let parties = unique_ids(self.parties.iter().map(|p| &p.object_id), "party")?;
        let candidates = unique_ids(self.candidates.iter().map(|c| &c.object_id), "candidate")?;
        if let Some(c) = self
            .candidates
            .iter()
            .find(|c| c.party_id.as_ref().is_some_and(|p| !parties.contains(p)))
        {
            return Err(ManifestError::Structure(format!(
                "candidate {} names an unknown party",
                c.object_id
            )));
        }
        unique_ids(self.contests.iter().map(|c| &c.object_id), "contest")?;
        let mut orders = std::collections::HashSet::new();
        for contest in &self.contests {
            if !orders.insert(contest.sequence_order) {
                return Err(ManifestError::Structure(format!(
                    "two contests share sequence order {}",
                    contest.sequence_order
                )));
            }
            contest.validate(&units, &candidates)?;
        }
        Ok(())
    }

    pub fn contest(&self, contest_id: &str) -> Option<&ContestDescription> {
        self.contests.iter().find(|c| c.object_id == contest_id)
    }

    pub fn ballot_style(&self, style_id: &str) -> Option<&BallotStyle> {
        self.ballot_styles.iter().find(|s| s.object_id == style_id)
    }

    /// The contests on a ballot of the given style, in manifest order.
    pub fn contests_for_style(&self, style_id: &str) -> Vec<&ContestDescription> {
        let units = match self
            .ballot_style(style_id)
            .and_then(|s| s.geopolitical_unit_ids.as_ref())
        {
            Some(units) => units,
            None => return Vec::new(),
        };
        self.contests
            .iter()
            .filter(|c| units.contains(&c.electoral_district_id))
            .collect()
    }
}

impl ContestDescription {
    fn validate(
        &self,
        units: &std::collections::HashSet<&String>,
        candidates: &std::collections::HashSet<&String>,
    ) -> Result<(), ManifestError> {
        let fail = |problem: String| {
            Err(ManifestError::Contest {
                contest: self.object_id.clone(),
                problem,
            })
        };
        if !SUPPORTED_VOTE_VARIATIONS.contains(&self.vote_variation.as_str()) {
            return fail(format!(
                "vote variation {:?} is not supported",
                self.vote_variation
            ));
        }
        if self.ballot_selections.is_empty()
            || self.number_elected as usize > self.ballot_selections.len()
        {
            return fail("number_elected exceeds the number of selections".into());
        }
        if self
            .votes_allowed
            .is_some_and(|allowed| self.number_elected > allowed)
        {
            return fail("number_elected exceeds votes_allowed".into());
        }
        let last = self
            .ballot_selections
            .iter()
            .map(|s| s.sequence_order)
            .max();
        if last.is_some_and(|last| last.checked_add(self.number_elected).is_none()) {
            return fail("sequence_order leaves no room for the placeholder selections".into());
        }
        if !units.contains(&self.electoral_district_id) {
            return fail(format!(
                "unknown electoral district {}",
                self.electoral_district_id
            ));
        }
        let n = self.ballot_selections.len();
        let distinct = |values: Vec<String>| {
            values
                .into_iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                == n
        };
        if !distinct(
            self.ballot_selections
                .iter()
                .map(|s| s.object_id.clone())
                .collect(),
        ) || !distinct(
            self.ballot_selections
                .iter()
                .map(|s| s.candidate_id.clone())
                .collect(),
        ) || !distinct(
            self.ballot_selections
                .iter()
                .map(|s| s.sequence_order.to_string())
                .collect(),
        ) {
            return fail(
                "selections must have distinct ids, candidates and sequence orders".into(),
            );
        }
        if let Some(s) = self
            .ballot_selections
            .iter()
            .find(|s| !candidates.contains(&s.candidate_id))
        {
            return fail(format!(
                "selection {} names unknown candidate {}",
                s.object_id, s.candidate_id
            ));
        }
        Ok(())
    }
}

fn unique_ids<'a>(
    ids: impl Iterator<Item = &'a String>,
    kind: &str,
) -> Result<std::collections::HashSet<&'a String>, ManifestError> {
    let mut set = std::collections::HashSet::new();
    for id in ids {
        if !set.insert(id) {
            return Err(ManifestError::Structure(format!(
                "duplicate {kind} id {id}"
            )));
        }
    }
    Ok(set)
}

/// The reference's `to_iso_date_string(parse(date))`: `YYYY-MM-DDTHH:MM:SSZ` in UTC,
/// fractional seconds dropped; a date without an offset is taken as it stands.
pub fn iso_utc(date: &str) -> Option<String> {
    let b = date.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = date.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, s) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &date[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hm = rest[1..].replace(':', "");
            if hm.len() != 4 || !hm.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            sign * (hm[..2].parse::<i64>().ok()? * 60 + hm[2..].parse::<i64>().ok()?)
        }
    };
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_minutes * 60;
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_utc_like_the_reference() {
        assert_eq!(
            iso_utc("2025-01-01T08:00:00+00:00").unwrap(),
            "2025-01-01T08:00:00Z"
        );
        assert_eq!(
            iso_utc("2020-11-03T06:00:00-05:00").unwrap(),
            "2020-11-03T11:00:00Z"
        );
        assert_eq!(
            iso_utc("2020-03-01T00:30:00.123+01:00").unwrap(),
            "2020-02-29T23:30:00Z"
        );
        assert_eq!(iso_utc("2020-13-01T00:00:00"), None);
        assert_eq!(iso_utc("tomorrow"), None);
    }

    fn contest(number_elected: u64, last_order: u64) -> ContestDescription {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/electionguard-python-1.4/manifest.json"
        ))
        .expect("the reference fixture");
        let manifest: Manifest = crate::json::from_json(&text).unwrap();
        let mut contest = manifest.contests[0].clone();
        contest.number_elected = number_elected;
        contest.ballot_selections.last_mut().unwrap().sequence_order = last_order;
        contest
    }

    /// Found by the fuzzer (fuzz/corpus/election_json/crash-placeholder-*.json).
    #[test]
    fn a_hostile_contest_yields_bounded_placeholders_without_panicking() {
        let huge = contest(u64::MAX, 3);
        assert!(huge.placeholder_selections().len() <= huge.ballot_selections.len());
        let at_the_edge = contest(1, u64::MAX);
        assert!(at_the_edge.placeholder_selections().is_empty());
        let honest = contest(1, 1000);
        assert_eq!(honest.placeholder_selections()[0].sequence_order, 1001);
    }
}

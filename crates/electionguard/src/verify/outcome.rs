//! What each check yields, shared by the verifier's modules: a check passes or says why
//! not, and a record's ballot box is required or optional.

pub(super) type Outcome = Result<(), String>;

pub(super) fn ensure(ok: bool, message: impl FnOnce() -> String) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

/// Whether a record must declare its ballot box (`ballot_box.json`) to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BallotBoxPolicy {
    /// Completeness must be proven: a record without a declaration fails.
    Required,
    /// For records of producers that publish no declaration (the reference library,
    /// MITRE's example): a missing declaration and chain gaps become notes ("not
    /// proven: …"). A declaration that is there is checked all the same.
    Optional,
}

//! A chunk's ballots, read page by page: a worker never holds more than [`PAGE`] stored
//! ballots at once, whatever the chunk size, so its memory does not grow with the election.

use crate::domain::{BallotRow, BallotState};
use crate::service::App;

/// Ballots read from the store at a time.
pub const PAGE: u64 = 200;

/// The ballots `offset .. offset + limit` of one state, in permutation order.
pub struct BallotPages<'a> {
    app: &'a App,
    election_id: &'a str,
    state: BallotState,
    offset: u64,
    remaining: u64,
    last: Option<(i64, String)>,
}

impl<'a> BallotPages<'a> {
    pub fn new(
        app: &'a App,
        election_id: &'a str,
        state: BallotState,
        offset: u64,
        limit: u64,
    ) -> Self {
        BallotPages {
            app,
            election_id,
            state,
            offset,
            remaining: limit,
            last: None,
        }
    }

    /// The next page, or `None` once the range is read. A range that ends early is an
    /// error: the ballot set changed after voting closed.
    pub async fn next(&mut self) -> anyhow::Result<Option<Vec<BallotRow>>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let page = PAGE.min(self.remaining);
        let store = &self.app.store;
        // Only the first page skips to the range's offset; the next ones continue from the
        // last ballot read, so a page's cost does not grow with its place in the election.
        let rows = match &self.last {
            None => {
                store
                    .ballots_page(self.election_id, self.state, self.offset, page)
                    .await?
            }
            Some((shuffle, id)) => {
                store
                    .ballots_after(self.election_id, self.state, (*shuffle, id), page)
                    .await?
            }
        };
        anyhow::ensure!(
            !rows.is_empty(),
            "{} ballots from position {} are missing: the ballot set changed after voting closed",
            self.remaining,
            self.offset
        );
        self.remaining -= (rows.len() as u64).min(self.remaining);
        self.last = rows.last().map(|r| (r.shuffle, r.ballot_id.clone()));
        Ok(Some(rows))
    }
}

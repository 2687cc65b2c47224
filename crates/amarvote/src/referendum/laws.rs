//! The laws a referendum asks about, as the API sees them.
//!
//! A vote for a law that was never set up is rejected at the edge. The law
//! list lives in `referendum_laws`; each API process caches the laws it has
//! confirmed, since checking the database on every vote would cost a round
//! trip per request. Unknown ids are looked up each time (a law created by
//! another API process is found at once); the rate limiter bounds what a
//! client sending bogus ids can cost.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

use std::sync::Arc;

use crate::ports::vote_store::{VoteStore, VoteStoreError};

pub struct Laws {
    tables: Arc<dyn VoteStore>,
    known: RwLock<HashSet<String>>,
}

impl Laws {
    pub fn new(tables: Arc<dyn VoteStore>) -> Self {
        Laws {
            tables,
            known: RwLock::new(HashSet::new()),
        }
    }

    /// Whether votes for `law_id` are accepted.
    pub async fn exists(&self, law_id: &str) -> Result<bool, VoteStoreError> {
        if self.cached(law_id) {
            return Ok(true);
        }
        let exists = self.tables.law_exists(law_id).await?;
        if exists {
            self.remember(law_id);
        }
        Ok(exists)
    }

    /// Creates a law; returns false if it already existed.
    pub async fn create(&self, law_id: &str, title: &str) -> Result<bool, VoteStoreError> {
        let created = self.tables.create_law(law_id, title).await?;
        self.remember(law_id);
        Ok(created)
    }

    fn cached(&self, law_id: &str) -> bool {
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        known.contains(law_id)
    }

    fn remember(&self, law_id: &str) {
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        known.insert(law_id.to_owned());
    }
}

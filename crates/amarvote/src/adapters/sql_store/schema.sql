CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS elections (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    guardians BIGINT NOT NULL,
    quorum BIGINT NOT NULL,
    manifest TEXT NOT NULL,
    context TEXT NOT NULL,
    device TEXT NOT NULL,
    shuffle_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS guardians (
    election_id TEXT NOT NULL REFERENCES elections(id),
    guardian_id TEXT NOT NULL,
    sequence_order BIGINT NOT NULL,
    public_record TEXT NOT NULL,
    sealed_secret BLOB NOT NULL,
    token_hash TEXT NOT NULL,
    decryption_grant BLOB,
    PRIMARY KEY (election_id, guardian_id)
);
CREATE TABLE IF NOT EXISTS voters (
    election_id TEXT NOT NULL REFERENCES elections(id),
    credential_hash TEXT NOT NULL,
    ballot_id TEXT,
    challenges BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (election_id, credential_hash)
);
CREATE TABLE IF NOT EXISTS ballots (
    election_id TEXT NOT NULL REFERENCES elections(id),
    ballot_id TEXT NOT NULL,
    state TEXT NOT NULL,
    shuffle BIGINT NOT NULL,
    code TEXT,
    body BLOB NOT NULL,
    sealed_nonces BLOB,
    voter_hash TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (election_id, ballot_id)
);
CREATE INDEX IF NOT EXISTS ballots_in_permutation ON ballots (election_id, state, shuffle, ballot_id);
CREATE UNIQUE INDEX IF NOT EXISTS ballots_by_code ON ballots (election_id, code);
CREATE INDEX IF NOT EXISTS ballots_by_voter ON ballots (election_id, voter_hash, state);
CREATE TABLE IF NOT EXISTS devices (
    election_id TEXT NOT NULL REFERENCES elections(id),
    device_id BIGINT NOT NULL,
    device_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    registered_by TEXT,
    last_code TEXT,
    ballots BIGINT NOT NULL,
    PRIMARY KEY (election_id, device_id)
);
CREATE INDEX IF NOT EXISTS devices_by_hash ON devices (election_id, device_hash);
CREATE INDEX IF NOT EXISTS devices_by_last_code ON devices (election_id, last_code);
CREATE INDEX IF NOT EXISTS devices_by_voter ON devices (election_id, registered_by);
CREATE TABLE IF NOT EXISTS ballot_fingerprints (
    election_id TEXT NOT NULL REFERENCES elections(id),
    fingerprint TEXT NOT NULL,
    ballot_id TEXT NOT NULL,
    PRIMARY KEY (election_id, fingerprint)
);
CREATE TABLE IF NOT EXISTS tally_shards (
    election_id TEXT NOT NULL REFERENCES elections(id),
    shard BIGINT NOT NULL,
    ballots BIGINT NOT NULL,
    product BLOB NOT NULL,
    PRIMARY KEY (election_id, shard)
);
CREATE TABLE IF NOT EXISTS ballot_counts (
    election_id TEXT NOT NULL REFERENCES elections(id),
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (election_id, state)
);
CREATE TABLE IF NOT EXISTS key_backups (
    election_id TEXT NOT NULL REFERENCES elections(id),
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    verified BIGINT,
    PRIMARY KEY (election_id, sender, recipient)
);
CREATE TABLE IF NOT EXISTS key_backup_challenges (
    election_id TEXT NOT NULL REFERENCES elections(id),
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (election_id, sender, recipient)
);
CREATE TABLE IF NOT EXISTS artifacts (
    election_id TEXT NOT NULL REFERENCES elections(id),
    name TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (election_id, name)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    election_id TEXT NOT NULL REFERENCES elections(id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    total_chunks BIGINT NOT NULL,
    params TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_job_per_kind ON jobs (election_id, kind) WHERE state IN ('running', 'finalizing');
CREATE TABLE IF NOT EXISTS job_chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    chunk_index BIGINT NOT NULL,
    queue TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    published_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    error TEXT,
    result BLOB,
    PRIMARY KEY (job_id, chunk_index)
);

CREATE TABLE IF NOT EXISTS referendum_schema_version (
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS referendum_laws (
    law_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS vote_results (
    law_id TEXT PRIMARY KEY,
    oui_count BIGINT NOT NULL,
    non_count BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS vote_audit (
    voter_hash TEXT PRIMARY KEY,
    law_id TEXT NOT NULL,
    choice TEXT NOT NULL,
    request_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    replaced_choice TEXT,
    replaced_request TEXT
);
CREATE TABLE IF NOT EXISTS vote_rejections (
    request_id TEXT PRIMARY KEY,
    voter_hash TEXT NOT NULL,
    law_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS referendum_sequence (
    id BIGINT PRIMARY KEY,
    next_value BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS duplicate_attempts (
    voter_hash TEXT PRIMARY KEY,
    attempts BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL
);

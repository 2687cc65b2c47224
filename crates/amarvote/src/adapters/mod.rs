//! The adapters: each port implemented for a deployment scale.
//!
//! | port | embedded default (`amarvote serve`) | scaled out (`api`, `worker`) |
//! |------|-------------------------------------|------------------------------|
//! | store | [`sql_store::SqlStore`] on SQLite | [`sql_store::SqlStore`] on PostgreSQL |
//! | queue | [`embedded_queue::EmbeddedQueue`] | [`rabbitmq::RabbitQueue`] |
//! | vote queue | [`vote_queue_sqlite::SqliteVoteQueue`] | [`vote_queue_amqp::AmqpVoteQueue`] |
//! | voter registry | [`registry_sqlite::SqliteRegistry`] | [`registry_redis::RedisRegistry`] |
//! | vote tables | [`vote_tables::VoteTables`] on SQLite | [`vote_tables::VoteTables`] on PostgreSQL |

pub mod amqp_link;
pub mod embedded_queue;
pub mod link_tls;
pub mod rabbitmq;
pub mod registry_redis;
pub mod registry_sqlite;
pub mod sql_db;
pub mod sql_store;
pub mod sqlite;
pub mod vote_envelope;
pub mod vote_queue_amqp;
pub mod vote_queue_sqlite;
pub mod vote_tables;

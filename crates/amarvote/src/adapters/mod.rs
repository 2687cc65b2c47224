//! The adapters: each port implemented for a deployment scale.
//!
//! | port | embedded default (`amarvote serve`) | scaled out (`api`, `worker`) |
//! |------|-------------------------------------|------------------------------|
//! | store | [`sql_store::SqlStore`] on SQLite | [`sql_store::SqlStore`] on PostgreSQL |
//! | queue | [`embedded_queue::EmbeddedQueue`] | [`rabbitmq::RabbitQueue`] |

pub mod amqp_link;
pub mod embedded_queue;
pub mod rabbitmq;
pub mod sql_store;

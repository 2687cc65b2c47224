//! One long-lived thread builds every encryption table of the process.
//!
//! glibc gives each thread an arena, and a freed chunk goes back to the arena it came
//! from, to be reused only by threads allocating there. Built on whichever blocking-pool
//! thread asked, successive elections' tables (up to 164,000 OpenSSL numbers, ~81 MB
//! each) spread over 16 arenas, each keeping the tables freed in it: an API encrypting for
//! a new election every few seconds went from 444 MB to 1.24 GB resident in eight minutes
//! with 320 MB in use. Built here, a freed table's memory is what the next one is built
//! from.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::OnceLock;

type Build = Box<dyn FnOnce() + Send>;

const THREAD_NAME: &str = "encryption-tables";

/// Runs `build` on the table thread and waits for its result, after any build queued
/// before it. Blocks: call it from a `spawn_blocking` task or a thread of your own, never
/// from an async task, nor from a build (which would wait for itself).
pub fn build_on_table_thread<T: Send + 'static>(build: impl FnOnce() -> T + Send + 'static) -> T {
    assert_ne!(
        std::thread::current().name(),
        Some(THREAD_NAME),
        "a table build cannot wait for another"
    );
    let (reply, answer) = mpsc::sync_channel(1);
    let job: Build = Box::new(move || {
        // A send fails only when the caller gave up waiting; nothing to tell it then.
        let _ = reply.send(build());
    });
    table_thread()
        .send(job)
        .expect("the table thread outlives every job");
    answer
        .recv()
        .expect("a table build panicked (see the log above)")
}

fn table_thread() -> &'static mpsc::Sender<Build> {
    static JOBS: OnceLock<mpsc::Sender<Build>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let (jobs, queued) = mpsc::channel::<Build>();
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                for job in queued {
                    // A panicking build drops its reply, which its caller reports; the
                    // thread stays up for the next one.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
            })
            .expect("the table thread starts");
        jobs
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_build_runs_on_the_one_table_thread_and_returns_its_result() {
        let callers: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    build_on_table_thread(move || {
                        format!("{}:{i}", std::thread::current().name().unwrap_or("?"))
                    })
                })
            })
            .collect();
        let names: Vec<String> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(name, &format!("{THREAD_NAME}:{i}"));
        }
    }

    #[test]
    fn a_build_that_panics_fails_its_caller_only() {
        let failed =
            std::thread::spawn(|| build_on_table_thread(|| -> u8 { panic!("boom") })).join();
        assert!(failed.is_err(), "the caller of a panicking build fails");
        assert_eq!(
            build_on_table_thread(|| 7u8),
            7,
            "the thread serves the next build"
        );
    }

    #[test]
    fn a_build_that_waits_for_another_is_refused_instead_of_hanging() {
        let nested =
            std::thread::spawn(|| build_on_table_thread(|| build_on_table_thread(|| 1u8))).join();
        assert!(nested.is_err(), "the nested build fails its caller");
        assert_eq!(build_on_table_thread(|| 2u8), 2);
    }
}

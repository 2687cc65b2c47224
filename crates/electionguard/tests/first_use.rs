//! In a fresh process, the very first group operation may be a hash reduced mod q: the
//! group's constants are then built inside that operation, which must not re-enter the
//! thread's big-number scratch context (it once panicked with "already borrowed").
//! This file holds one test so that nothing else touches the group first.

use electionguard::group::ElementModQ;

#[test]
fn a_hash_may_be_the_first_group_operation_of_a_process() {
    let hashed = electionguard::hash::hash_elems(&[&"first", &1u64]);
    assert_eq!(hashed, electionguard::hash::hash_elems(&[&"first", &1u64]));
    assert_ne!(hashed, ElementModQ::from_i64(0));
}

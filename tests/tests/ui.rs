//! Tests for `#[coproq::service]` misuse: each case in `tests/ui/` must fail to compile
//! with the error in its `.stderr` (regenerate with `TRYBUILD=overwrite` and review).

#[test]
fn misuse_is_a_compile_error_that_says_what_to_write() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/*.rs");
}

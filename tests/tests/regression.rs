//! Tests for bugs that were fixed: one module per issue, each test failing before its fix.

#[path = "regression/issue8.rs"]
mod issue8;

#[path = "regression/issue25.rs"]
mod issue25;

#[path = "regression/issue26.rs"]
mod issue26;

#[path = "regression/issue27.rs"]
mod issue27;

//! A typed service: `#[coproq::service]` on a trait gives a client whose methods read
//! like local calls, an application error that arrives typed, and a one-way event.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Why a calculation failed; travels to the client typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CalcError {
    DivisionByZero,
    Overflow { a: i64, b: i64 },
}

/// A calculator that runs in a worker process.
#[coproq::service]
pub trait Calc {
    /// Adds two numbers.
    fn add(&self, a: i64, b: i64) -> i64;
    /// Divides, or says why not.
    fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// How many operations so far.
    fn count(&self) -> u64;
    /// A line for the worker's log; no reply.
    #[event]
    fn log(&self, line: String);
}

#[derive(Default)]
struct Calculator {
    ops: AtomicU64,
}

impl Calc for Calculator {
    fn add(&self, a: i64, b: i64) -> i64 {
        self.ops.fetch_add(1, Ordering::Relaxed);
        a + b
    }

    fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        if b == 0 {
            return Err(CalcError::DivisionByZero);
        }
        a.checked_div(b).ok_or(CalcError::Overflow { a, b })
    }

    fn count(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    fn log(&self, line: String) {
        eprintln!("[calculator worker {}] {line}", std::process::id());
    }
}

fn main() -> coproq::Result<()> {
    let worker = coproq::fork(|parent| {
        parent.listen(CalcServer::new(Calculator::default()));
    })?;
    let calc = CalcClient::new(&worker);

    println!("2 + 3 = {}", calc.add(2, 3)?);
    println!("7 / 2 = {:?}", calc.div(7, 2)?);
    println!("1 / 0 = {:?}", calc.div(1, 0)?); // Ok(Err(CalcError::DivisionByZero))
    calc.log("three operations done".into())?;

    // Pipelined: many calls in flight at once.
    let pending: Vec<_> = (0..1000).map(|i| calc.add_async(i, i)).collect();
    let total: i64 = pending
        .into_iter()
        .map(coproq::Pending::wait)
        .sum::<coproq::Result<i64>>()?;
    println!("sum of 1000 doubled numbers = {total}");

    // The same method, reached by name.
    let by_name: i64 = worker.call("add", (40i64, 2i64))?;
    println!("add by name = {by_name}; operations: {}", calc.count()?);
    worker.close();
    Ok(())
}

//! Typed calls in both directions: the parent serves `Progress` to its worker, the worker
//! serves `Jobs`, and a job reports progress to the parent while it runs.

use coproq::WeakCoprocess;

/// What the parent offers its worker.
#[coproq::service]
pub trait Progress {
    /// Reports how far a job got; returns whether to go on.
    fn report(&self, job: String, percent: u8) -> bool;
}

/// What the worker offers the parent.
#[coproq::service]
pub trait Jobs {
    /// Runs a job in steps, reporting each to the parent; returns the steps done.
    fn run(&self, job: String, steps: u8) -> coproq::Result<u8>;
}

struct Printer;

impl Progress for Printer {
    fn report(&self, job: String, percent: u8) -> bool {
        println!("parent: {job} at {percent}%");
        percent < 60 // stop the job past 60%
    }
}

struct Runner {
    parent: WeakCoprocess,
}

impl Jobs for Runner {
    fn run(&self, job: String, steps: u8) -> coproq::Result<u8> {
        let parent = self.parent.upgrade().ok_or(coproq::Error::NotConnected)?;
        let progress = ProgressClient::new(&parent);
        for step in 1..=steps {
            let percent = (u16::from(step) * 100 / u16::from(steps)) as u8;
            if !progress.report(job.clone(), percent)? {
                return Ok(step);
            }
        }
        Ok(steps)
    }
}

fn main() -> coproq::Result<()> {
    let worker = coproq::Coprocess::builder()
        .listen(ProgressServer::new(Printer))
        .fork(|parent| {
            parent.listen(JobsServer::new(Runner {
                parent: parent.downgrade(),
            }));
        })?;
    let jobs = JobsClient::new(&worker);
    let done = jobs.run("compile".into(), 5)?;
    println!("parent: the worker stopped after {done} of 5 steps");
    assert_eq!(done, 3);
    worker.close();
    Ok(())
}

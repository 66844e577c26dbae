//! A separate worker binary serving the typed `Calc` service.

use coproq_tests::services::{CalcServer, Calculator};

fn main() -> coproq::Result<()> {
    let parent = coproq::Coprocess::parent()?;
    parent.listen(CalcServer::new(Calculator::default()));
    parent.serve();
    Ok(())
}

//! A separate worker binary for the flood tests: either side of `coproq_tests::flood`.

use coproq::Coprocess;

fn main() -> coproq::Result<()> {
    let parent = Coprocess::parent()?;
    coproq_tests::flood::serve(&parent);
    parent.serve();
    Ok(())
}

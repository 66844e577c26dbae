//! The first release of the shop service, as a worker binary.

use coproq_tests::shop::v1::{Impl, ShopServer};

fn main() -> coproq::Result<()> {
    let parent = coproq::Coprocess::parent()?;
    parent.listen(ShopServer::new(Impl::default()));
    parent.serve();
    Ok(())
}

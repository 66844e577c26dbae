#[coproq::service]
trait Sink {
    fn put(&self, items: impl Iterator<Item = u8>);
    fn take(&self) -> impl Iterator<Item = u8>;
}

fn main() {}

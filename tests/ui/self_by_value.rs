#[coproq::service]
trait Consumer {
    fn consume(self) -> u64;
}

fn main() {}

#[coproq::service]
trait Counter {
    fn increment(&mut self) -> u64;
}

fn main() {}

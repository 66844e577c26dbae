#[coproq::service]
trait Factory {
    fn create(name: String) -> u64;
}

fn main() {}

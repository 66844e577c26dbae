#[coproq::service]
trait Limits {
    const MAX: u32;
    fn max(&self) -> u32;
}

fn main() {}

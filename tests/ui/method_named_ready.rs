#[coproq::service]
trait Shapes {
    fn ready(&self, sides: u32) -> u64;
}

fn main() {}

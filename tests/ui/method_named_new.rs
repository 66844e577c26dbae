#[coproq::service]
trait Shapes {
    fn new(&self, sides: u32) -> u64;
}

fn main() {}

#[coproq::service]
trait Source {
    type Item;
    fn next(&self) -> u32;
}

fn main() {}

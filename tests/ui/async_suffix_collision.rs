#[coproq::service]
trait Jobs {
    fn run(&self, id: u32) -> bool;
    fn run_async(&self, id: u32) -> bool;
}

fn main() {}

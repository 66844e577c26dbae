#[coproq::service]
trait Logger {
    #[event]
    fn log(&self, line: String) -> bool;
}

fn main() {}

#[coproq::service]
trait Greeter {
    fn greet(&self, name: &'static str) -> String;
}

fn main() {}

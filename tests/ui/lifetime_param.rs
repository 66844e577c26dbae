#[coproq::service]
trait Names {
    fn longest<'a>(&self, a: &'a str, b: &'a str) -> String;
}

fn main() {}

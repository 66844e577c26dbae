#[coproq::service(name = "calc")]
trait Calc {
    fn add(&self, a: i32, b: i32) -> i32;
}

fn main() {}

#[coproq::service]
trait Store {
    fn put<T: serde::Serialize>(&self, value: T);
}

fn main() {}

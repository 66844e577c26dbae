#[coproq::service]
trait Lookup {
    fn find(&self, key: Option<&str>) -> u32;
    fn join(&self, parts: Vec<&str>) -> String;
}

fn main() {}

#[coproq::service]
trait Repo {
    fn clone(&self, url: String) -> u32;
    fn fmt(&self, code: String) -> String;
}

fn main() {}

#[coproq::service]
trait Names {
    async fn name(&self) -> &str;
}

fn main() {}

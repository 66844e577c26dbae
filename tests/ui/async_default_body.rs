#[coproq::service]
trait Fetcher {
    async fn fetch(&self, url: String) -> Vec<u8> {
        url.into_bytes()
    }
}

fn main() {}

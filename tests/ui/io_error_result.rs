#[coproq::service]
trait Files {
    fn read(&self, path: String) -> Result<Vec<u8>, std::io::Error>;
    fn size(&self, path: String) -> std::io::Result<u64>;
}

fn main() {}

pub struct Handle;

#[coproq::service]
trait Files {
    fn close(&self, handle: Handle) -> bool;
}

fn main() {}

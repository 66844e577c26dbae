#[coproq::service]
trait Broken {
    fn a(&mut self);
    fn b<T>(&self, t: T);
    #[event]
    fn c(&self) -> u32;
}

// The trait is still emitted, so this impl adds no error of its own.
struct Impl;

impl Broken for Impl {
    fn a(&mut self) {}
    fn b<T>(&self, _t: T) {}
    fn c(&self) -> u32 {
        0
    }
}

fn main() {}

//! Two versions of one typed service, as two releases of a program would declare it:
//! served by the `shop_v1` and `shop_v2` worker binaries and called by the tests of
//! services that evolve.

/// The first release.
pub mod v1 {
    use serde::{Deserialize, Serialize};

    /// An order.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Order {
        /// What is ordered.
        pub item: String,
        /// How many.
        pub quantity: u32,
    }

    /// The shop, as first released.
    #[coproq::service]
    pub trait Shop {
        /// Places an order; its number.
        fn place(&self, order: Order) -> u64;
        /// The order placed under `number`.
        fn order(&self, number: u64) -> Option<Order>;
        /// The price of `item`, in cents.
        fn price(&self, item: String) -> u32;
        /// Removed in v2.
        fn legacy(&self) -> String;
    }

    /// The shop's implementation.
    #[derive(Debug, Default)]
    pub struct Impl {
        orders: std::sync::Mutex<Vec<Order>>,
    }

    impl Shop for Impl {
        fn place(&self, order: Order) -> u64 {
            let mut orders = self.orders.lock().unwrap();
            orders.push(order);
            orders.len() as u64
        }
        fn order(&self, number: u64) -> Option<Order> {
            let orders = self.orders.lock().unwrap();
            orders
                .get(usize::try_from(number).ok()?.checked_sub(1)?)
                .cloned()
        }
        fn price(&self, item: String) -> u32 {
            u32::try_from(item.len()).unwrap_or(u32::MAX) * 100
        }
        fn legacy(&self) -> String {
            "v1".into()
        }
    }
}

/// The second release: a method added, a field added with a default, a method removed,
/// and one method whose argument type changed.
pub mod v2 {
    use serde::{Deserialize, Serialize};

    /// An order, with a field v1 does not send.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Order {
        /// What is ordered.
        pub item: String,
        /// How many.
        pub quantity: u32,
        /// A discount code; none from a v1 caller.
        #[serde(default)]
        pub coupon: Option<String>,
    }

    /// The shop, as released second.
    #[coproq::service]
    pub trait Shop {
        /// Places an order; its number.
        fn place(&self, order: Order) -> u64;
        /// The order placed under `number`.
        fn order(&self, number: u64) -> Option<Order>;
        /// The price of `item`, in cents: now by item number.
        fn price(&self, item: u32) -> u32;
        /// New in v2.
        fn count(&self) -> u64;
    }

    /// The shop's implementation.
    #[derive(Debug, Default)]
    pub struct Impl {
        orders: std::sync::Mutex<Vec<Order>>,
    }

    impl Shop for Impl {
        fn place(&self, order: Order) -> u64 {
            let mut orders = self.orders.lock().unwrap();
            orders.push(order);
            orders.len() as u64
        }
        fn order(&self, number: u64) -> Option<Order> {
            let orders = self.orders.lock().unwrap();
            orders
                .get(usize::try_from(number).ok()?.checked_sub(1)?)
                .cloned()
        }
        fn price(&self, item: u32) -> u32 {
            item * 100
        }
        fn count(&self) -> u64 {
            self.orders.lock().unwrap().len() as u64
        }
    }
}

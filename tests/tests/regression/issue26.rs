//! Issue 26: every serde type a self-describing format supports, and values that evolve
//! (fields and variants matched by name), against a real worker.

use coproq::{Coprocess, Error};
use coproq_tests::call;
use serde::{Deserialize, Serialize};

// Item 1 and 2: serde's attributes round-trip through a worker, and a self-describing
// receiver reads any value.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Skips {
    id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Internal {
    Circle { r: f64 },
    Square { side: u32 },
    Empty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    Number(i64),
    Named { name: String },
    Nothing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Point { x: i32, y: i32 },
    Word(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Renamed {
    first_name: String,
    #[serde(rename = "n")]
    number: u8,
    #[serde(skip)]
    cache: u64,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Page {
    limit: u32,
    offset: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Query {
    text: String,
    #[serde(flatten)]
    page: Page,
    #[serde(flatten)]
    extra: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A worker that echoes each kind of value with its own type.
fn attribute_worker() -> Coprocess {
    coproq::fork(|parent| {
        parent
            .handle("skips", |v: Skips| v)
            .handle("internal", |v: Internal| v)
            .handle("adjacent", |v: Adjacent| v)
            .handle("untagged", |v: Untagged| v)
            .handle("renamed", |v: Renamed| v)
            .handle("flatten", |v: Query| v)
            .handle("json", |v: serde_json::Value| v);
    })
    .unwrap()
}

#[test]
fn item2_serde_attributes_round_trip_through_a_worker() {
    let w = attribute_worker();
    for v in [
        Skips { id: 1, note: None },
        Skips {
            id: 2,
            note: Some("n".into()),
        },
    ] {
        assert_eq!(
            call::<Skips>(&w, "skips", &v).unwrap(),
            v,
            "skip_serializing_if"
        );
    }
    for v in [
        Internal::Circle { r: 0.5 },
        Internal::Square { side: 2 },
        Internal::Empty,
    ] {
        assert_eq!(call::<Internal>(&w, "internal", &v).unwrap(), v, "tag");
    }
    for v in [
        Adjacent::Number(-3),
        Adjacent::Named { name: "x".into() },
        Adjacent::Nothing,
    ] {
        assert_eq!(
            call::<Adjacent>(&w, "adjacent", &v).unwrap(),
            v,
            "tag, content"
        );
    }
    for v in [Untagged::Point { x: 1, y: 2 }, Untagged::Word("w".into())] {
        assert_eq!(call::<Untagged>(&w, "untagged", &v).unwrap(), v, "untagged");
    }
    let v = Renamed {
        first_name: "Ada".into(),
        number: 3,
        cache: 99,
        tags: vec!["a".into()],
    };
    let back = call::<Renamed>(&w, "renamed", &v).unwrap();
    assert_eq!(back, Renamed { cache: 0, ..v }, "rename, skip, default");
    let v = Query {
        text: "q".into(),
        page: Page {
            limit: 10,
            offset: 0,
        },
        extra: [("lang".to_owned(), serde_json::json!("en"))].into(),
    };
    assert_eq!(call::<Query>(&w, "flatten", &v).unwrap(), v, "flatten");
    w.close();
}

#[test]
fn item1_a_struct_or_enum_reads_as_a_json_value_and_back() {
    let w = attribute_worker();
    let sent = Internal::Circle { r: 1.5 };
    let value: serde_json::Value = call(&w, "internal", &sent).unwrap();
    assert_eq!(value, serde_json::json!({"type": "Circle", "r": 1.5}));
    // A value the worker holds as JSON reads back as the struct it came from.
    let back: Renamed = call(
        &w,
        "json",
        serde_json::json!({"firstName": "Bo", "n": 1, "tags": []}),
    )
    .unwrap();
    assert_eq!(back.first_name, "Bo");
    w.close();
}

#[test]
fn item1_mismatches_under_a_self_describing_receiver_name_the_real_shape() {
    #[derive(Serialize)]
    struct Two {
        a: u8,
        b: u8,
    }
    let w = attribute_worker();
    let err = call::<Internal>(&w, "internal", Two { a: 1, b: 2 }).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("missing field `type`") && !text.contains("534"),
        "{text}"
    );
    w.close();
}

// Item 3: structs decode by field name, enums by variant name.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderV1 {
    id: u64,
    item: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderV2 {
    item: String,
    id: u64,
    #[serde(default)]
    quantity: u32,
    coupon: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    coupon: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StatusV1 {
    Open,
    Closed { at: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StatusV2 {
    Draft,
    Open,
    Closed {
        #[serde(default)]
        by: Option<String>,
        at: u64,
    },
}

#[test]
fn item3_an_old_caller_and_a_new_handler_and_back_both_work() {
    let w = coproq::fork(|parent| {
        parent
            .handle("v2_order", |o: OrderV2| OrderV2 {
                quantity: o.quantity + 1,
                ..o
            })
            .handle("v2_status", |s: StatusV2| s)
            .handle("order", |o: Order| o.id);
    })
    .unwrap();
    let v1 = OrderV1 {
        id: 7,
        item: "tea".into(),
    };
    // A v1 caller of a v2 handler: the added fields take their defaults, and the v2 reply
    // reads as v1 (its extra fields ignored).
    let back: OrderV1 = call(&w, "v2_order", &v1).unwrap();
    assert_eq!(back, v1);
    let back: OrderV2 = call(&w, "v2_order", &v1).unwrap();
    assert_eq!((back.quantity, back.coupon), (1, None));
    // Variants by name: `Closed` is number 1 on one side and 2 on the other.
    let back: StatusV1 = call(&w, "v2_status", StatusV1::Closed { at: 5 }).unwrap();
    assert_eq!(back, StatusV1::Closed { at: 5 });
    let back: StatusV1 = call(&w, "v2_status", StatusV1::Open).unwrap();
    assert_eq!(back, StatusV1::Open);
    // A field the handler needs and nobody sent is named.
    let err = call::<u64>(&w, "order", &v1).unwrap_err();
    assert!(
        matches!(&err, Error::Remote(_))
            && err.to_string().contains("`Order`: missing field `coupon`"),
        "{err}"
    );
    w.close();
}

// Item 5: scripting leniency, at any depth.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: f64,
    y: f64,
}

#[test]
#[allow(
    clippy::float_cmp,
    reason = "the values are exact: small integers and halves"
)]
fn item5_json_shaped_arguments_are_accepted_where_they_fit_exactly() {
    let w = coproq::fork(|parent| {
        parent
            .handle("sqrt", |x: f64| x.sqrt())
            .handle("norm", |p: Point| p.x.hypot(p.y))
            .handle("sum", |(a, b): (f64, f64)| a + b)
            .handle("maybe", |x: Option<u32>| x.map_or(0, |x| x + 1));
    })
    .unwrap();
    // An integer where a float is asked for, when the float holds it exactly.
    assert_eq!(call::<f64>(&w, "sqrt", 4).unwrap(), 2.0);
    let err = call::<f64>(&w, "sqrt", (1i64 << 53) + 1).unwrap_err();
    assert!(err.to_string().contains("does not hold exactly"), "{err}");
    // A map of field names where a struct is, a JSON object among them.
    let norm: f64 = call(&w, "norm", serde_json::json!({"x": 3, "y": 4.0})).unwrap();
    assert_eq!(norm, 5.0);
    // A sequence of the right length where a tuple is.
    assert_eq!(
        call::<f64>(&w, "sum", serde_json::json!([1, 2.5])).unwrap(),
        3.5
    );
    let err = call::<f64>(&w, "sum", vec![1.0, 2.0, 3.0]).unwrap_err();
    assert!(err.to_string().contains("tuple of 2"), "{err}");
    // A bare value where an option is.
    assert_eq!(call::<u32>(&w, "maybe", 4u32).unwrap(), 5);
    assert_eq!(call::<u32>(&w, "maybe", None::<u32>).unwrap(), 0);
    // Anything else is refused, with its path.
    let err = call::<f64>(&w, "norm", serde_json::json!({"x": "3", "y": 4})).unwrap_err();
    assert!(
        err.to_string()
            .contains("field `x`: expected f64, got string"),
        "{err}"
    );
    w.close();
}

// Item 6: `methods()` lists calls only; `events()` lists listeners.

#[test]
fn item6_methods_and_events_are_told_apart() {
    let w = coproq::fork(|parent| {
        parent
            .handle("add", |(a, b): (i32, i32)| a + b)
            .on("log", |_: String| ())
            .on("tick", |_: u64| ());
    })
    .unwrap();
    let methods = w.methods().unwrap();
    assert_eq!(methods, ["add"]);
    assert_eq!(w.events().unwrap(), ["log", "tick"]);
    // Everything `methods()` lists answers a call.
    for name in methods {
        assert!(!matches!(
            call::<i32>(&w, &name, (1, 2)),
            Err(Error::MethodNotFound(_))
        ));
    }
    w.close();
}

// Item 4: services evolve per method. Two releases of one service (`coproq_tests::shop`),
// as two worker binaries; every pairing of an old or new caller with an old or new worker.

mod shop {
    use std::process::Command;

    use coproq::{Coprocess, Error};
    use coproq_tests::shop::{v1, v2};

    fn worker(version: u8) -> Coprocess {
        let exe = match version {
            1 => env!("CARGO_BIN_EXE_shop_v1"),
            _ => env!("CARGO_BIN_EXE_shop_v2"),
        };
        Coprocess::spawn(Command::new(exe)).unwrap()
    }

    fn order_v1() -> v1::Order {
        v1::Order {
            item: "tea".into(),
            quantity: 2,
        }
    }

    fn order_v2() -> v2::Order {
        v2::Order {
            item: "tea".into(),
            quantity: 2,
            coupon: Some("SPRING".into()),
        }
    }

    fn assert_missing(result: coproq::Result<impl std::fmt::Debug>, method: &str) {
        match result {
            Err(Error::MethodNotFound(name)) => assert_eq!(name, method),
            other => panic!("{method}: {other:?}"),
        }
    }

    fn assert_mismatch(result: coproq::Result<impl std::fmt::Debug>, method: &str) {
        match result {
            Err(Error::ServiceMismatch { detail, .. }) => assert!(
                detail.contains(&format!("method `{method}`"))
                    && detail.contains("fn price(String) -> u32")
                    && detail.contains("fn price(u32) -> u32"),
                "{detail}"
            ),
            other => panic!("{method}: {other:?}"),
        }
    }

    #[test]
    fn item4_an_old_caller_and_an_old_worker() {
        let w = worker(1);
        let shop = v1::ShopClient::new(&w);
        assert_eq!(shop.place(order_v1()).unwrap(), 1);
        assert_eq!(shop.order(1).unwrap(), Some(order_v1()));
        assert_eq!(shop.price("tea".into()).unwrap(), 300);
        assert_eq!(shop.legacy().unwrap(), "v1");
        w.close();
    }

    #[test]
    fn item4_an_old_caller_and_a_new_worker() {
        let w = worker(2);
        let shop = v1::ShopClient::new(&w);
        // Unchanged methods work; the v1 order takes v2's default; v2's reply reads as v1.
        assert_eq!(shop.place(order_v1()).unwrap(), 1);
        assert_eq!(shop.order(1).unwrap(), Some(order_v1()));
        assert_missing(shop.legacy(), "legacy");
        assert_mismatch(shop.price("tea".into()), "price");
        // Still working after the failures: each method was judged on its own.
        assert_eq!(shop.place(order_v1()).unwrap(), 2);
        let newer = v2::ShopClient::new(&w);
        assert_eq!(newer.order(1).unwrap().map(|o| o.coupon), Some(None));
        w.close();
    }

    #[test]
    fn item4_a_new_caller_and_an_old_worker() {
        let w = worker(1);
        let shop = v2::ShopClient::new(&w);
        // v1 ignores the coupon it does not know; its reply lacks one: the default.
        assert_eq!(shop.place(order_v2()).unwrap(), 1);
        let back = shop.order(1).unwrap().unwrap();
        assert_eq!(
            back,
            v2::Order {
                coupon: None,
                ..order_v2()
            }
        );
        assert_missing(shop.count(), "count");
        assert_mismatch(shop.price(3), "price");
        assert_eq!(shop.place(order_v2()).unwrap(), 2);
        w.close();
    }

    #[test]
    fn item4_a_new_caller_and_a_new_worker() {
        let w = worker(2);
        let shop = v2::ShopClient::new(&w);
        assert_eq!(shop.place(order_v2()).unwrap(), 1);
        assert_eq!(shop.order(1).unwrap(), Some(order_v2()));
        assert_eq!(shop.price(3).unwrap(), 300);
        assert_eq!(shop.count().unwrap(), 1);
        w.close();
    }

    #[test]
    fn item4_a_worker_of_the_old_release_calls_a_parent_of_the_new() {
        let w = Coprocess::builder()
            .listen(v2::ShopServer::new(v2::Impl::default()))
            .fork(|parent| {
                let shop = v1::ShopClient::new(parent);
                let placed = shop.place(order_v1()).unwrap();
                let legacy = matches!(shop.legacy(), Err(Error::MethodNotFound(_)));
                parent.handle("results", move |(): ()| (placed, legacy));
            })
            .unwrap();
        let (placed, legacy): (u64, bool) = coproq_tests::call(&w, "results", ()).unwrap();
        assert_eq!((placed, legacy), (1, true));
        w.close();
    }
}

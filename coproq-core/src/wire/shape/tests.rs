//! Shapes recorded by the sender and checked by the receiver, through bincode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::record;
use crate::wire::{WireError, codec};

/// Encodes `value` with its shape and decodes it as `T`.
fn send<S: Serialize + ?Sized, T: DeserializeOwned>(value: &S) -> Result<T, String> {
    let mut shape = Vec::new();
    record(value, &mut shape).unwrap();
    let mut bytes = Vec::new();
    codec::encode_into(value, &mut bytes).unwrap();
    codec::decode_checked(&shape, &bytes).map_err(|e| {
        assert!(matches!(e, WireError::Mismatch(_)), "{e:?}");
        e.to_string()
    })
}

fn shape_of<S: Serialize + ?Sized>(value: &S) -> Vec<u8> {
    let mut shape = Vec::new();
    record(value, &mut shape).unwrap();
    shape
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Swapped {
    y: i32,
    x: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Meters(f64);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Marker;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Dot,
    Circle(f64),
    Rect(u32, u32),
    Named { name: String, sides: Option<u8> },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Other {
    Square(f64),
}

#[test]
fn every_kind_of_value_round_trips() {
    assert_eq!(send::<_, u32>(&7u32).unwrap(), 7);
    assert_eq!(send::<_, String>("héllo").unwrap(), "héllo");
    assert_eq!(send::<_, ()>(&()).unwrap(), ());
    assert_eq!(send::<_, Marker>(&Marker).unwrap(), Marker);
    assert_eq!(send::<_, Meters>(&Meters(1.5)).unwrap(), Meters(1.5));
    assert_eq!(
        send::<_, f64>(&Meters(2.5)).unwrap().to_bits(),
        2.5f64.to_bits()
    );
    assert_eq!(send::<_, char>(&'ß').unwrap(), 'ß');
    assert_eq!(
        send::<_, (bool, i128, u128)>(&(true, -1i128, u128::MAX)).unwrap(),
        (true, -1, u128::MAX)
    );
    let points = vec![Point { x: 1, y: 2 }, Point { x: -3, y: 4 }];
    assert_eq!(send::<_, Vec<Point>>(&points).unwrap(), points);
    let shapes = vec![
        Shape::Dot,
        Shape::Circle(1.0),
        Shape::Rect(2, 3),
        Shape::Named {
            name: "tri".into(),
            sides: Some(3),
        },
        Shape::Named {
            name: "blob".into(),
            sides: None,
        },
    ];
    assert_eq!(send::<_, Vec<Shape>>(&shapes).unwrap(), shapes);
    let map: BTreeMap<String, Vec<Option<u8>>> = [
        ("a".to_owned(), vec![Some(1), None]),
        ("b".to_owned(), vec![]),
    ]
    .into();
    assert_eq!(
        send::<_, BTreeMap<String, Vec<Option<u8>>>>(&map).unwrap(),
        map
    );
    assert_eq!(send::<_, [u16; 3]>(&[1u16, 2, 3]).unwrap(), [1, 2, 3]);
    let empty: Vec<String> = Vec::new();
    assert_eq!(send::<_, Vec<String>>(&empty).unwrap(), empty);
}

#[test]
fn uniform_sequences_record_one_element_shape() {
    let long: Vec<Point> = (0..1000).map(|i| Point { x: i, y: -i }).collect();
    let short = vec![Point { x: 0, y: 0 }];
    assert_eq!(shape_of(&long), shape_of(&short));
    // Elements that differ are each recorded, and still check.
    let mixed: Vec<Option<u8>> = (0..100u8).map(|i| (i % 3 == 0).then_some(i)).collect();
    assert!(shape_of(&mixed).len() > 100);
    assert_eq!(send::<_, Vec<Option<u8>>>(&mixed).unwrap(), mixed);
    assert!(send::<_, Vec<Option<u16>>>(&mixed).is_ok());
    assert!(send::<_, Vec<Option<String>>>(&mixed).is_err());
}

#[test]
fn the_cases_of_issue_8_are_errors_naming_the_path() {
    let err = send::<_, (i64, i64)>(&("", "")).unwrap_err();
    assert_eq!(err, "element 0: expected i64, got string");
    let err = send::<_, (i64, i64)>(&(1.5f64, 2.5f64)).unwrap_err();
    assert_eq!(err, "element 0: expected i64, got f64");
    let err = send::<_, (i64, i64)>(&(u64::MAX, 0u64)).unwrap_err();
    assert!(
        err.starts_with("element 0: ")
            && err.contains("18446744073709551615")
            && err.contains("i64"),
        "{err}"
    );
    let err = send::<_, (Vec<f32>, f32)>(&(vec!["1"], 2i32)).unwrap_err();
    assert_eq!(err, "element 0, element 0: expected f32, got string");
}

#[test]
fn integers_cross_types_that_hold_their_value() {
    assert_eq!(send::<_, u32>(&1234i32).unwrap(), 1234);
    assert_eq!(send::<_, u64>(&7u32).unwrap(), 7);
    assert_eq!(send::<_, (i64, i64)>(&(1, 2)).unwrap(), (1, 2));
    assert_eq!(send::<_, Vec<u8>>(&vec![1i64, 255]).unwrap(), vec![1, 255]);
    let err = send::<_, u32>(&-1i32).unwrap_err();
    assert!(err.contains("-1") && err.contains("u32"), "{err}");
    let err = send::<_, Vec<u8>>(&vec![1i64, 256]).unwrap_err();
    assert!(
        err.starts_with("element 1: ") && err.contains("256"),
        "{err}"
    );
    // Floats only widen; an integer is a float where the float holds it exactly.
    assert_eq!(send::<_, f64>(&1.5f32).unwrap().to_bits(), 1.5f64.to_bits());
    assert!(send::<_, f32>(&1.5f64).is_err());
    assert_eq!(send::<_, f64>(&4u8).unwrap().to_bits(), 4f64.to_bits());
    assert_eq!(
        send::<_, (Vec<f32>, f64)>(&(vec![1i32, -2], 3i64)).unwrap(),
        (vec![1.0, -2.0], 3.0)
    );
    assert_eq!(
        send::<_, f64>(&(1i64 << 53)).unwrap().to_bits(),
        9_007_199_254_740_992f64.to_bits()
    );
    let err = send::<_, f64>(&((1i64 << 53) + 1)).unwrap_err();
    assert!(err.contains("does not hold exactly"), "{err}");
    let err = send::<_, Vec<f32>>(&vec![0u32, 1 << 25]).unwrap_err();
    assert!(
        err.starts_with("element 1: ") && err.contains("f32"),
        "{err}"
    );
}

#[test]
fn json_shaped_values_are_accepted_where_they_fit() {
    use std::collections::BTreeMap;
    // A map of field names where a struct is asked for.
    let map: BTreeMap<&str, i32> = [("y", 2), ("x", 1)].into_iter().collect();
    assert_eq!(send::<_, Point>(&map).unwrap(), Point { x: 1, y: 2 });
    let err = send::<_, Point>(&BTreeMap::from([("x", 1)])).unwrap_err();
    assert!(err.contains("missing field `y`"), "{err}");
    // A sequence of the tuple's length where a tuple is asked for.
    assert_eq!(send::<_, (u8, u8)>(&vec![1u8, 2]).unwrap(), (1, 2));
    let err = send::<_, (u8, u8)>(&vec![1u8, 2, 3]).unwrap_err();
    assert!(err.contains("tuple of 2"), "{err}");
    let err = send::<_, (u8, u8, u8)>(&vec![1u8, 2]).unwrap_err();
    assert!(err.contains('3'), "{err}");
    // A bare value where an option is asked for.
    assert_eq!(send::<_, Option<u8>>(&5u8).unwrap(), Some(5));
    assert_eq!(
        send::<_, Vec<Option<String>>>(&vec!["a"]).unwrap(),
        vec![Some("a".to_owned())]
    );
    // Anything else is still refused, with its path.
    let err = send::<_, (u8, u8)>(&vec!["a", "b"]).unwrap_err();
    assert!(
        err.starts_with("element 0: expected u8, got string"),
        "{err}"
    );
}

#[test]
fn structs_and_enums_are_checked_by_name() {
    // Fields are matched by name, in whatever order they come.
    let swapped = send::<_, Swapped>(&Point { x: 1, y: 2 }).unwrap();
    assert_eq!(swapped, Swapped { y: 2, x: 1 });
    let err = send::<_, Other>(&Shape::Circle(1.0)).unwrap_err();
    assert!(err.contains("Square") && err.contains("Circle"), "{err}");
    let err = send::<_, Point>(&(1, 2)).unwrap_err();
    assert_eq!(err, "expected struct `Point`, got tuple of 2");
    let err = send::<_, Shape>(&Shape::Rect(1, 2)).map(drop);
    assert!(err.is_ok());
    let err = send::<_, (u8, u8, u8)>(&(1u8, 2u8)).unwrap_err();
    assert_eq!(err, "expected tuple of 3, got tuple of 2");
    let err = send::<_, Vec<Point>>(&vec![(1, 2)]).unwrap_err();
    assert!(err.starts_with("element 0: expected struct"), "{err}");
}

#[test]
fn byte_strings_and_byte_sequences_interoperate() {
    let bytes = crate::bytes::Bytes(b"abc");
    assert_eq!(send::<_, Vec<u8>>(&bytes).unwrap(), b"abc");
    let buf: crate::bytes::ByteBuf = send(&b"xyz".to_vec()).unwrap();
    assert_eq!(buf.into_vec(), b"xyz");
    assert!(send::<_, Vec<u8>>(&"abc").is_err());
    assert!(send::<_, crate::bytes::ByteBuf>(&vec![1u32]).is_err());
}

#[test]
fn self_describing_receivers_read_what_was_sent() {
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Number(u64),
        Text(String),
    }
    assert_eq!(send::<_, Loose>(&5u8).unwrap(), Loose::Number(5));
    assert_eq!(
        send::<_, Loose>("five").unwrap(),
        Loose::Text("five".into())
    );
}

#[test]
fn a_hostile_shape_is_an_error_never_a_panic() {
    let mut bytes = Vec::new();
    codec::encode_into(&(1u32, "two", vec![3u8]), &mut bytes).unwrap();
    let good = shape_of(&(1u32, "two", vec![3u8]));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut shape = good.clone();
        match round % 3 {
            0 => {
                let at = (seed as usize) % shape.len();
                shape[at] ^= (seed >> 32) as u8;
            }
            1 => shape.truncate((seed as usize) % shape.len()),
            _ => {
                shape = (0..(seed % 40))
                    .map(|i| (seed >> (i % 8 * 8)) as u8)
                    .collect();
            }
        }
        let _ = codec::decode_checked::<(u32, String, Vec<u8>)>(&shape, &bytes);
        let _ = codec::decode_checked::<Vec<Shape>>(&shape, &bytes);
    }
    // Deeply nested shapes are refused, not recursed into.
    let deep = [super::tag::SEQ, super::mode::SAME].repeat(10_000);
    assert!(codec::decode_checked::<Vec<u8>>(&deep, &bytes).is_err());
}

mod evolution {
    //! Values whose types changed between sender and receiver: fields and variants are
    //! matched by name.

    use serde::{Deserialize, Serialize};

    use super::send;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OrderV1 {
        id: u64,
        item: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct OrderV2 {
        item: String,
        id: u64,
        #[serde(default)]
        quantity: u32,
        note: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        coupon: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        id: u64,
        item: String,
    }

    fn v1() -> OrderV1 {
        OrderV1 {
            id: 7,
            item: String::from("tea"),
        }
    }

    #[test]
    fn a_field_the_sender_lacks_takes_its_default() {
        let v2: OrderV2 = send(&v1()).unwrap();
        assert_eq!(
            v2,
            OrderV2 {
                item: String::from("tea"),
                id: 7,
                quantity: 0,
                note: None
            }
        );
    }

    #[test]
    fn a_field_the_receiver_does_not_know_is_ignored_unless_it_denies_unknown_fields() {
        let v2 = OrderV2 {
            item: String::from("tea"),
            id: 7,
            quantity: 3,
            note: Some(String::from("12")),
        };
        assert_eq!(send::<_, OrderV1>(&v2).unwrap(), v1());
        let err = send::<_, Strict>(&v2).unwrap_err();
        assert!(
            err.starts_with("`Strict`: unknown field `quantity`"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_field_without_a_default_is_named() {
        let err = send::<_, Order>(&v1()).unwrap_err();
        assert_eq!(err, "`Order`: missing field `coupon`");
        let err = send::<_, Vec<Order>>(&vec![v1()]).unwrap_err();
        assert_eq!(err, "element 0, `Order`: missing field `coupon`");
    }

    #[test]
    fn a_wrong_field_type_is_named_by_its_path() {
        #[derive(Serialize)]
        struct Wrong {
            id: &'static str,
        }
        let err = send::<_, OrderV2>(&Wrong { id: "x" }).unwrap_err();
        assert_eq!(err, "field `id`: expected u64, got string");
    }

    #[test]
    fn nested_and_repeated_structs_evolve_alike() {
        let sent = vec![(v1(), Some(v1())), (v1(), None)];
        let got: Vec<(OrderV2, Option<OrderV2>)> = send(&sent).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|(o, _)| o.id == 7 && o.quantity == 0));
        assert_eq!(got[0].1.as_ref().map(|o| o.item.as_str()), Some("tea"));
        // Many elements of one layout, as a long sequence describes it once.
        let many: Vec<OrderV1> = (0..1000).map(|_| v1()).collect();
        let got: Vec<OrderV2> = send(&many).unwrap();
        assert_eq!(got.len(), 1000);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum EventV1 {
        Started,
        Stopped { code: i32 },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum EventV2 {
        Started,
        Paused(u32),
        Stopped {
            #[serde(default)]
            signal: Option<i32>,
            code: i32,
        },
    }

    #[test]
    fn enums_decode_by_variant_name() {
        let got: Vec<EventV2> =
            send(&vec![EventV1::Started, EventV1::Stopped { code: 3 }]).unwrap();
        assert_eq!(
            got,
            vec![
                EventV2::Started,
                EventV2::Stopped {
                    signal: None,
                    code: 3
                }
            ]
        );
        let back: EventV1 = send(&EventV2::Stopped {
            signal: Some(9),
            code: 1,
        })
        .unwrap();
        assert_eq!(back, EventV1::Stopped { code: 1 });
        let err = send::<_, EventV1>(&EventV2::Paused(1)).unwrap_err();
        assert!(err.contains("got variant `Paused`"), "{err}");
    }
}

mod attributes {
    //! serde's attributes, as a self-describing format supports them.

    use serde::{Deserialize, Serialize};

    use super::send;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Skips {
        id: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Internal {
        Circle { r: f64 },
        Square { side: u32 },
        Empty,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "t", content = "c")]
    enum Adjacent {
        Number(i64),
        Pair(u8, u8),
        Named { name: String },
        Nothing,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Point { x: i32, y: i32 },
        Word(String),
    }

    /// A `with` module: a number written as its decimal text.
    mod as_text {
        use serde::{Deserialize, Deserializer, Serializer};

        #[allow(
            clippy::trivially_copy_pass_by_ref,
            reason = "serde's `with` passes a reference"
        )]
        pub(super) fn serialize<S: Serializer>(n: &u32, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&n.to_string())
        }

        pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
            String::deserialize(d)?
                .parse()
                .map_err(serde::de::Error::custom)
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct With {
        #[serde(with = "as_text")]
        count: u32,
        first_name: String,
        #[serde(rename = "n", default)]
        number: u8,
    }

    #[test]
    fn with_and_rename_round_trip() {
        let value = With {
            count: 12,
            first_name: "a".into(),
            number: 4,
        };
        assert_eq!(send::<_, With>(&value).unwrap(), value);
        let as_json: serde_json::Value = send(&value).unwrap();
        assert_eq!(
            as_json,
            serde_json::json!({"count": "12", "firstName": "a", "n": 4})
        );
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Page {
        limit: u32,
        offset: u64,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Query {
        text: String,
        #[serde(flatten)]
        page: Page,
        #[serde(flatten)]
        extra: std::collections::BTreeMap<String, serde_json::Value>,
    }

    #[test]
    fn flattened_fields_round_trip() {
        let value = Query {
            text: "q".into(),
            page: Page {
                limit: 10,
                offset: 20,
            },
            extra: [("lang".to_owned(), serde_json::json!("en"))].into(),
        };
        assert_eq!(send::<_, Query>(&value).unwrap(), value);
        let json: serde_json::Value = send(&value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"text": "q", "limit": 10, "offset": 20, "lang": "en"})
        );
    }

    #[test]
    fn skipped_fields_round_trip() {
        for value in [
            Skips { id: 1, note: None },
            Skips {
                id: 2,
                note: Some("n".into()),
            },
        ] {
            assert_eq!(send::<_, Skips>(&value).unwrap(), value);
        }
    }

    #[test]
    fn internally_tagged_enums_round_trip() {
        for value in [
            Internal::Circle { r: 1.5 },
            Internal::Square { side: 3 },
            Internal::Empty,
        ] {
            assert_eq!(send::<_, Internal>(&value).unwrap(), value);
        }
    }

    #[test]
    fn adjacently_tagged_enums_round_trip() {
        for value in [
            Adjacent::Number(-4),
            Adjacent::Pair(1, 2),
            Adjacent::Named { name: "x".into() },
            Adjacent::Nothing,
        ] {
            assert_eq!(send::<_, Adjacent>(&value).unwrap(), value);
        }
    }

    #[test]
    fn untagged_enums_round_trip() {
        for value in [Untagged::Point { x: 1, y: -1 }, Untagged::Word("w".into())] {
            assert_eq!(send::<_, Untagged>(&value).unwrap(), value);
        }
    }

    #[test]
    fn any_value_reads_as_json_would() {
        #[derive(Serialize)]
        enum E {
            Unit,
            New(u8),
            Tuple(u8, bool),
            Struct { a: u8 },
        }
        #[derive(Serialize)]
        struct All {
            name: &'static str,
            list: Vec<u16>,
            pair: (u8, char),
            none: Option<u8>,
            some: Option<u8>,
            enums: Vec<E>,
        }
        let value: serde_json::Value = send(&All {
            name: "n",
            list: vec![1, 2],
            pair: (3, 'c'),
            none: None,
            some: Some(4),
            enums: vec![E::Unit, E::New(5), E::Tuple(6, true), E::Struct { a: 7 }],
        })
        .unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "name": "n",
                "list": [1, 2],
                "pair": [3, "c"],
                "none": null,
                "some": 4,
                "enums": ["Unit", {"New": 5}, {"Tuple": [6, true]}, {"Struct": {"a": 7}}],
            })
        );
    }

    #[test]
    fn a_mismatch_under_a_self_describing_receiver_names_the_real_shape() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "type")]
        #[allow(dead_code, reason = "decoded to fail")]
        enum Tagged {
            A { x: u8 },
        }
        let err = send::<_, Tagged>(&(1u8, 2u8)).unwrap_err();
        assert!(!err.contains("534") && !err.contains("``"), "{err}");
        let err = send::<_, Tagged>(&super::Point { x: 1, y: 2 }).unwrap_err();
        assert!(err.contains("missing field `type`"), "{err}");
    }
}

#[test]
#[allow(
    clippy::zero_sized_map_values,
    reason = "the hostile case is such a map"
)]
fn a_hostile_count_of_zero_sized_elements_is_refused_not_looped_over() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Nothing {
        a: (),
        b: ((), ()),
    }
    // Seventeen bytes that claim 2^34 elements of no size: refused at once.
    let mut shape = Vec::new();
    record(&vec![()], &mut shape).unwrap();
    let bytes = (1u64 << 34).to_le_bytes();
    let err = codec::decode_checked::<Vec<()>>(&shape, &bytes).unwrap_err();
    assert!(err.to_string().contains("elements of no size"), "{err}");
    let mut shape = Vec::new();
    record(
        &std::collections::BTreeMap::from([((), ((), ()))]),
        &mut shape,
    )
    .unwrap();
    let err = codec::decode_checked::<std::collections::HashMap<(), ((), ())>>(&shape, &bytes)
        .unwrap_err();
    assert!(err.to_string().contains("elements of no size"), "{err}");
    let mut shape = Vec::new();
    record(&vec![Nothing { a: (), b: ((), ()) }], &mut shape).unwrap();
    let err = codec::decode_checked::<Vec<Nothing>>(&shape, &bytes).unwrap_err();
    assert!(err.to_string().contains("elements of no size"), "{err}");
    // Up to the limit they decode, the limit itself included.
    let mut shape = Vec::new();
    record(&vec![()], &mut shape).unwrap();
    for n in [1000u64, 1 << 20] {
        let got = codec::decode_checked::<Vec<()>>(&shape, &n.to_le_bytes()).unwrap();
        assert_eq!(got.len() as u64, n);
    }
    let err = codec::decode_checked::<Vec<()>>(&shape, &((1u64 << 20) + 1).to_le_bytes());
    assert!(err.is_err());
}

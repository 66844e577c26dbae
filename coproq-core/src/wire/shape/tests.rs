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
    let err = send::<_, (Vec<f32>, f32)>(&(vec![1i32, 2], 2i32)).unwrap_err();
    assert_eq!(err, "element 0, element 0: expected f32, got i32");
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
    // Floats only widen.
    assert_eq!(send::<_, f64>(&1.5f32).unwrap().to_bits(), 1.5f64.to_bits());
    assert!(send::<_, f32>(&1.5f64).is_err());
    assert!(send::<_, f64>(&1u8).is_err());
}

#[test]
fn structs_and_enums_are_checked_by_name() {
    let err = send::<_, Swapped>(&Point { x: 1, y: 2 }).unwrap_err();
    assert_eq!(err, "expected field `y`, got field `x`");
    let err = send::<_, Other>(&Shape::Circle(1.0)).unwrap_err();
    assert!(err.contains("Square") && err.contains("Circle"), "{err}");
    let err = send::<_, Point>(&(1, 2)).unwrap_err();
    assert_eq!(err, "expected struct `Point` of 2 fields, got tuple of 2");
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

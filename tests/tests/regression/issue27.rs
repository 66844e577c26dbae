//! Issue 27: asking for a `Result` gets the handler's error channel back as one.

use coproq::{Coprocess, Error, RemoteErrorKind};
use coproq_tests::call;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ParseError {
    Empty,
    NotANumber { at: usize },
}

fn worker() -> Coprocess {
    coproq::fork(|parent| {
        parent
            .handle("parse", |text: String| -> Result<u64, ParseError> {
                if text.is_empty() {
                    return Err(ParseError::Empty);
                }
                text.parse().map_err(|_| ParseError::NotANumber {
                    at: text.find(|c: char| !c.is_ascii_digit()).unwrap_or(0),
                })
            })
            .handle("text_error", |fail: bool| -> Result<String, String> {
                if fail {
                    Err("no luck".to_owned())
                } else {
                    Ok("fine".to_owned())
                }
            })
            .handle("plain", |n: u32| n + 1)
            .handle("nested", |n: u32| -> Result<Result<u32, String>, String> {
                Ok(if n == 0 { Err("zero".into()) } else { Ok(n) })
            })
            .handle("panics", |(): ()| -> Result<u32, String> { panic!("boom") });
    })
    .expect("fork")
}

#[test]
fn item_result_asking_for_a_result_gets_ok_and_err_back_as_one() {
    let w = worker();
    assert_eq!(
        call::<Result<u64, ParseError>>(&w, "parse", "42").unwrap(),
        Ok(42)
    );
    assert_eq!(
        call::<Result<u64, ParseError>>(&w, "parse", "").unwrap(),
        Err(ParseError::Empty)
    );
    assert_eq!(
        call::<Result<u64, ParseError>>(&w, "parse", "12x").unwrap(),
        Err(ParseError::NotANumber { at: 2 })
    );
    assert_eq!(
        call::<Result<String, String>>(&w, "text_error", true).unwrap(),
        Err("no luck".to_owned())
    );
    assert_eq!(
        call::<Result<String, String>>(&w, "text_error", false).unwrap(),
        Ok("fine".to_owned())
    );
    // A handler that returns a plain value is its `Ok`; asking for the value alone works
    // as before, and the error then comes as `Error::Remote`.
    assert_eq!(
        call::<Result<u32, String>>(&w, "plain", 1u32).unwrap(),
        Ok(2)
    );
    assert_eq!(call::<u64>(&w, "parse", "7").unwrap(), 7);
    let Err(Error::Remote(remote)) = call::<u64>(&w, "parse", "") else {
        panic!("the error of a call that asks for the value is Error::Remote");
    };
    assert_eq!(remote.kind(), RemoteErrorKind::Failed);
    // The same through call_async and its future.
    let pending = w.call_async::<Result<u64, ParseError>>("parse", "x");
    assert_eq!(
        pending.wait_timeout(coproq_tests::CALL_LIMIT).unwrap(),
        Err(ParseError::NotANumber { at: 0 })
    );
    w.close().unwrap();
}

#[test]
fn item_result_a_nested_result_and_what_stays_an_error_of_the_call() {
    let w = worker();
    // A value that is itself a `Result` (inside the handler's `Ok`) decodes as it is.
    assert_eq!(
        call::<Result<u32, String>>(&w, "nested", 5u32).unwrap(),
        Ok(5)
    );
    assert_eq!(
        call::<Result<u32, String>>(&w, "nested", 0u32).unwrap(),
        Err("zero".to_owned())
    );
    // A panic is no error value of the handler's: it stays an error of the call.
    let Err(Error::Remote(remote)) = call::<Result<u32, String>>(&w, "panics", ()) else {
        panic!("a panic is Error::Remote");
    };
    assert_eq!(remote.kind(), RemoteErrorKind::Panicked);
    // An error that the asked-for `E` does not decode stays the remote error, with its
    // text; a value that the asked-for `T` does not decode is a decode error naming `Ok`.
    let Err(Error::Remote(remote)) = call::<Result<u64, u32>>(&w, "parse", "") else {
        panic!("an error E does not decode is Error::Remote");
    };
    assert_eq!(remote.kind(), RemoteErrorKind::Failed);
    assert_eq!(remote.message(), "Empty");
    let Err(Error::Decode { reason, .. }) = call::<Result<String, ParseError>>(&w, "parse", "9")
    else {
        panic!("a value T does not decode is Error::Decode");
    };
    assert!(reason.contains("`Ok`"), "{reason}");
    // A missing method stays MethodNotFound.
    assert!(matches!(
        call::<Result<u32, String>>(&w, "nope", ()),
        Err(Error::MethodNotFound(_))
    ));
    w.close().unwrap();
}

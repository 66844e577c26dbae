//! A position in a sender's shape, shared by every wrapper of one checked decode, and the
//! path of the first failure (built as the error unwinds, so a decode that succeeds pays
//! nothing for it).

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};

use serde::de;

use super::{mode, tag, variant};

/// How deeply nested a shape may be; deeper ones are refused rather than risk the stack.
const MAX_DEPTH: usize = 128;

/// One step of the path to a node.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Element(usize),
    Field(&'static str),
    KeyAt(usize),
    Value(usize),
    Variant(&'static str),
    /// A field as the sender named it: where its name lies in the shape.
    Sent {
        at: usize,
        len: usize,
    },
    /// A variant as the sender named it, read as a self-describing value.
    SentVariant {
        at: usize,
        len: usize,
    },
    /// The value of a map's entry whose key is this string (a map read as a struct).
    Key(String),
    /// A struct the receiver decoded by its field names (for its own errors: a missing
    /// or unknown field).
    Struct(&'static str),
}

/// How many struct layouts a decode remembers as matching the receiver's fields (a
/// sequence of structs describes its element once, and nesting alternates a few).
const MATCHED: usize = 8;

/// A position in a shape, shared by all the wrappers of one decode.
#[derive(Debug)]
pub(crate) struct Cursor<'s> {
    pub(super) shape: &'s [u8],
    pub(super) at: Cell<usize>,
    /// The path of the first failure, once there is one, outermost step first.
    failed_at: RefCell<Option<Vec<Step>>>,
    /// Struct layouts found to be exactly a receiver's fields: (where the members start
    /// in the shape, the receiver's field list), by start.
    matched: Cell<[(usize, usize); MATCHED]>,
}

impl<'s> Cursor<'s> {
    pub(crate) fn new(shape: &'s [u8]) -> Self {
        Self {
            shape,
            at: Cell::new(0),
            failed_at: RefCell::new(None),
            matched: Cell::new([(usize::MAX, 0); MATCHED]),
        }
    }

    /// Where the first failure happened, as "element 0, field `x`"; `None` at the top.
    pub(crate) fn failure_path(&self) -> Option<String> {
        let failed = self.failed_at.borrow();
        let path = failed.as_ref().filter(|p| !p.is_empty())?;
        let mut text = String::new();
        for (i, step) in path.iter().rev().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let _ = match step {
                Step::Element(n) => write!(text, "element {n}"),
                Step::Field(name) => write!(text, "field `{name}`"),
                Step::KeyAt(n) => write!(text, "key {n}"),
                Step::Key(name) => write!(text, "field `{name}`"),
                Step::Value(n) => write!(text, "value {n}"),
                Step::Variant(name) => write!(text, "variant `{name}`"),
                Step::Sent { at, len } => {
                    let name = self.shape.get(*at..at + len).unwrap_or_default();
                    write!(text, "field `{}`", String::from_utf8_lossy(name))
                }
                Step::SentVariant { at, len } => {
                    let name = self.shape.get(*at..at + len).unwrap_or_default();
                    write!(text, "variant `{}`", String::from_utf8_lossy(name))
                }
                Step::Struct(name) => write!(text, "`{name}`"),
            };
        }
        Some(text)
    }

    /// Whether the whole shape was used (a decode that left some is a mismatch).
    pub(crate) fn finished(&self) -> bool {
        self.at.get() == self.shape.len()
    }

    /// Marks a failure that happened at `step` itself, not inside one of its members.
    pub(super) fn failed_in(&self, step: Step) {
        self.failed_at
            .borrow_mut()
            .get_or_insert_with(Vec::new)
            .push(step);
    }

    /// Whether something inside has failed already (its error carries its own path).
    pub(super) fn has_failed(&self) -> bool {
        self.failed_at.borrow().is_some()
    }

    fn note_failure(&self) {
        self.failed_at.borrow_mut().get_or_insert_with(Vec::new);
    }

    pub(super) fn fail<E: de::Error>(&self, message: impl fmt::Display) -> E {
        self.note_failure();
        E::custom(message)
    }

    #[inline]
    pub(super) fn noted<T, E>(&self, result: Result<T, E>) -> Result<T, E> {
        if result.is_err() {
            self.note_failure();
        }
        result
    }

    /// Runs `body` for the member at `step`; a failure inside gets the step on its path
    /// (pushed innermost first, read back reversed).
    #[inline]
    pub(super) fn within<T, E>(
        &self,
        step: Step,
        body: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let result = body();
        if result.is_err() {
            self.failed_at
                .borrow_mut()
                .get_or_insert_with(Vec::new)
                .push(step);
        }
        result
    }

    #[inline]
    pub(super) fn byte<E: de::Error>(&self) -> Result<u8, E> {
        let at = self.at.get();
        let byte = *self
            .shape
            .get(at)
            .ok_or_else(|| self.fail::<E>("the value's shape ended early"))?;
        self.at.set(at + 1);
        Ok(byte)
    }

    pub(super) fn u32<E: de::Error>(&self) -> Result<u32, E> {
        let at = self.at.get();
        let bytes = self
            .shape
            .get(at..at + 4)
            .ok_or_else(|| self.fail::<E>("the value's shape ended early"))?;
        self.at.set(at + 4);
        Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
    }

    pub(super) fn name<E: de::Error>(&self) -> Result<&'s [u8], E> {
        let len = usize::from(self.byte::<E>()?);
        let at = self.at.get();
        let name = self
            .shape
            .get(at..at + len)
            .ok_or_else(|| self.fail::<E>("the value's shape ended early"))?;
        self.at.set(at + len);
        Ok(name)
    }

    /// Whether the struct whose members (`count` of them, the count read) start at the
    /// cursor are exactly `fields`, by name and in order: then the receiver can read
    /// them by position. The cursor stays where it is.
    pub(super) fn fields_match<E: de::Error>(
        &self,
        count: usize,
        fields: &'static [&'static str],
    ) -> Result<bool, E> {
        if count != fields.len() {
            return Ok(false);
        }
        let start = self.at.get();
        let key = (start, fields.as_ptr() as usize);
        let slot = start % MATCHED;
        let mut matched = self.matched.get();
        if matched[slot] == key {
            return Ok(true);
        }
        let mut same = true;
        for field in fields {
            if self.name::<E>()? != super::name_bytes(field) {
                same = false;
                break;
            }
            self.skip::<E>(1)?;
        }
        self.at.set(start);
        if same {
            matched[slot] = key;
            self.matched.set(matched);
        }
        Ok(same)
    }

    /// Moves past one node and its children.
    fn skip<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > MAX_DEPTH {
            return Err(self.fail("the value's shape is nested too deeply"));
        }
        match self.byte::<E>()? {
            tag::BOOL..=tag::UNIT | tag::NONE => Ok(()),
            tag::SOME => self.skip(depth + 1),
            tag::SEQ => self.skip_elements(depth, 1),
            tag::MAP => self.skip_elements(depth, 2),
            tag::TUPLE => self.skip_members(depth, false),
            tag::STRUCT => self.skip_members(depth, true),
            tag::ENUM => {
                self.u32::<E>()?;
                self.name::<E>()?;
                match self.byte::<E>()? {
                    variant::UNIT => Ok(()),
                    variant::NEWTYPE => self.skip(depth + 1),
                    variant::TUPLE => self.skip_members(depth, false),
                    variant::STRUCT => self.skip_members(depth, true),
                    other => Err(self.fail(format_args!("unknown variant kind {other} in shape"))),
                }
            }
            other => Err(self.fail(format_args!("unknown shape tag {other}"))),
        }
    }

    fn skip_elements<E: de::Error>(&self, depth: usize, per_element: usize) -> Result<(), E> {
        let count = match self.byte::<E>()? {
            mode::EMPTY => 0,
            mode::SAME => 1,
            mode::EACH => self.u32::<E>()? as usize,
            other => return Err(self.fail(format_args!("unknown sequence mode {other}"))),
        };
        for _ in 0..count * per_element {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    fn skip_members<E: de::Error>(&self, depth: usize, named: bool) -> Result<(), E> {
        for _ in 0..self.u32::<E>()? {
            if named {
                self.name::<E>()?;
            }
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    /// The end of the node at the cursor, which stays where it is.
    pub(super) fn end_of_node<E: de::Error>(&self) -> Result<usize, E> {
        let start = self.at.get();
        self.skip::<E>(0)?;
        let end = self.at.get();
        self.at.set(start);
        Ok(end)
    }
}

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
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    Element(usize),
    Field(&'static str),
    Key(usize),
    Value(usize),
    Variant(&'static str),
}

/// A position in a shape, shared by all the wrappers of one decode.
#[derive(Debug)]
pub(crate) struct Cursor<'s> {
    pub(super) shape: &'s [u8],
    pub(super) at: Cell<usize>,
    /// The path of the first failure, once there is one, outermost step first.
    failed_at: RefCell<Option<Vec<Step>>>,
}

impl<'s> Cursor<'s> {
    pub(crate) fn new(shape: &'s [u8]) -> Self {
        Self {
            shape,
            at: Cell::new(0),
            failed_at: RefCell::new(None),
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
                Step::Key(n) => write!(text, "key {n}"),
                Step::Value(n) => write!(text, "value {n}"),
                Step::Variant(name) => write!(text, "variant `{name}`"),
            };
        }
        Some(text)
    }

    /// Whether the whole shape was used (a decode that left some is a mismatch).
    pub(crate) fn finished(&self) -> bool {
        self.at.get() == self.shape.len()
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

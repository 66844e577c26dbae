//! The wrappers that carry the shape check into nested values: visitors, sequence, map
//! and enum accesses, and seeds, each checking its part against the cursor.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::check::Checked;
use super::cursor::{Cursor, Step};
use super::{mode, name_bytes, tag, variant};

/// A visitor (or access) wrapped with the cursor and what the shape said.
pub(super) struct Wrap<'c, 's, V, S> {
    pub(super) visitor: V,
    pub(super) cursor: &'c Cursor<'s>,
    pub(super) state: S,
}

/// The members of a tuple or struct, read in order.
pub(super) struct Members {
    len: usize,
    fields: Option<&'static [&'static str]>,
    next: usize,
}

impl Members {
    pub(super) fn tuple(len: usize) -> Self {
        Self {
            len,
            fields: None,
            next: 0,
        }
    }

    pub(super) fn fields(fields: &'static [&'static str]) -> Self {
        Self {
            len: fields.len(),
            fields: Some(fields),
            next: 0,
        }
    }
}

/// The fields of a struct read by their names, as the sender wrote them: a map of the
/// sender's field names to their values, over the positional members bincode reads.
pub(super) struct ByName {
    /// The receiving struct, for errors of its own (a missing or unknown field).
    pub(super) name: &'static str,
    /// Fields the sender wrote and the receiver has not taken yet.
    pub(super) left: usize,
    /// Where the name of the field whose value comes next lies in the shape.
    pub(super) field: (usize, usize),
    /// Whether the value of the last key has been taken.
    pub(super) taken: bool,
}

impl ByName {
    pub(super) fn new(name: &'static str, count: usize) -> Self {
        Self {
            name,
            left: count,
            field: (0, 0),
            taken: true,
        }
    }
}

/// The entries of a map read as a struct: keys must be strings, and each value's path
/// names its key.
pub(super) struct NamedEntries {
    pub(super) entries: Elements,
    /// The key of the entry whose value comes next.
    key: String,
}

impl NamedEntries {
    pub(super) fn new(entries: Elements) -> Self {
        Self {
            entries,
            key: String::new(),
        }
    }
}

/// The elements of a sequence or the entries of a map.
pub(super) struct Elements {
    /// Where each element's shape starts, when one shape stands for all.
    same: Option<usize>,
    /// The shape of each element of a byte string.
    fixed: Option<u8>,
    /// Elements the shape still describes.
    left: usize,
    /// Whether `left` is the cap on elements of no size, not the shape's count.
    capped: bool,
    next: usize,
    /// Where the node ends.
    pub(super) end: usize,
}

impl Elements {
    /// Reads the mode of the sequence or map whose tag, at `start`, was just taken.
    pub(super) fn read<E: de::Error>(cursor: &Cursor<'_>, start: usize) -> Result<Self, E> {
        let after_tag = cursor.at.get();
        cursor.at.set(start);
        let end = cursor.end_of_node::<E>()?;
        cursor.at.set(after_tag);
        let (same, left) = match cursor.byte::<E>()? {
            mode::EMPTY => (None, 0),
            mode::SAME => (Some(cursor.at.get()), usize::MAX),
            _ => (None, cursor.u32::<E>()? as usize),
        };
        // Elements of no size take no bytes, so nothing bounds their count but the count
        // itself, which a hostile peer may set to 2^64: such a sequence is refused past
        // `MAX_ZERO_SIZED` instead of looped over.
        let capped = same.is_some_and(|at| is_zero_sized(&cursor.shape[at..end]));
        let left = if capped { MAX_ZERO_SIZED } else { left };
        // Elements that are all one scalar need no cursor at all (the common long case).
        let fixed = same
            .filter(|&start| start + 1 == end)
            .and_then(|start| cursor.shape.get(start).copied())
            .filter(|&tag| matches!(tag, tag::BOOL..=tag::STR));
        Ok(Self {
            same: same.filter(|_| fixed.is_none()),
            fixed,
            left,
            capped,
            next: 0,
            end,
        })
    }

    /// A byte string read as a sequence of `u8`.
    pub(super) fn bytes(cursor: &Cursor<'_>) -> Self {
        Self {
            same: None,
            fixed: Some(tag::U8),
            left: usize::MAX,
            capped: false,
            next: 0,
            end: cursor.at.get(),
        }
    }

    /// Reads the next element (or entry's key) with `read`, which is told whether the
    /// shape describes one more (if not, the data must have ended too); a failure gets
    /// the element's `step` on its path.
    fn next_in<T, E: de::Error>(
        &mut self,
        cursor: &Cursor<'_>,
        step: fn(usize) -> Step,
        read: impl FnOnce(bool) -> Result<Option<T>, E>,
    ) -> Result<Option<T>, E> {
        let index = self.next;
        let described = self.advance(cursor);
        if described {
            self.next += 1;
        }
        cursor.within(step(index), || cursor.noted(read(described)))
    }

    /// What an element beyond the last that the shape allows is told.
    fn surplus(&self) -> Surplus {
        Surplus(if self.capped {
            "the value has more than 1048576 elements of no size: refused"
        } else {
            "the value has more elements than its shape"
        })
    }

    /// Positions the cursor for the next element; false if the shape has no more.
    #[inline]
    fn advance(&mut self, cursor: &Cursor<'_>) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        if let Some(start) = self.same {
            cursor.at.set(start);
        }
        true
    }
}

/// The most elements of no size (`()`, unit structs, tuples of them) a sequence or map
/// may have.
const MAX_ZERO_SIZED: usize = 1 << 20;

/// Whether the values of `shape` (one node, or a map entry's key and value) take no
/// bytes at all: units, and tuples and structs of them.
fn is_zero_sized(shape: &[u8]) -> bool {
    /// Whether the node at `at` is zero-sized, moving `at` past it (depth-bounded: a
    /// node too deep is taken as sized).
    fn node(shape: &[u8], at: &mut usize, depth: usize) -> bool {
        let Some(&tag) = shape.get(*at) else {
            return false;
        };
        *at += 1;
        let named = match tag {
            tag::UNIT => return true,
            tag::TUPLE => false,
            tag::STRUCT => true,
            _ => return false,
        };
        let Some(count) = shape.get(*at..*at + 4) else {
            return false;
        };
        *at += 4;
        let count = u32::from_le_bytes(count.try_into().unwrap_or_default());
        (0..count).all(|_| {
            if named {
                *at += 1 + usize::from(shape.get(*at).copied().unwrap_or(0));
            }
            depth < 16 && node(shape, at, depth + 1)
        })
    }
    let mut at = 0;
    while at < shape.len() {
        if !node(shape, &mut at, 0) {
            return false;
        }
    }
    true
}

/// An enum's variant as the shape gives it.
pub(super) struct Variant {
    pub(super) name: &'static str,
    pub(super) kind: u8,
    /// Whether the receiver numbers the variant otherwise than the sender: it is then
    /// told the variant by name, not by the index in the bytes.
    pub(super) by_name: bool,
}

/// A seed whose deserializer is checked.
pub(super) struct Seed<'c, 's, T> {
    inner: T,
    cursor: &'c Cursor<'s>,
    fixed: Option<u8>,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, '_, T> {
    type Value = T::Value;
    #[inline]
    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<T::Value, D::Error> {
        self.inner.deserialize(Checked {
            inner,
            cursor: self.cursor,
            fixed: self.fixed,
        })
    }
}

/// A seed for an element the shape does not have: the data is longer than its shape.
pub(super) struct Surplus(&'static str);

impl<'de> DeserializeSeed<'de> for Surplus {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(self.0))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, bool> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        if self.state {
            return Err(self.cursor.fail("the value is None but its shape is Some"));
        }
        self.visitor.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        if !self.state {
            return Err(self.cursor.fail("the value is Some but its shape is None"));
        }
        self.visitor.visit_some(Checked {
            inner,
            cursor: self.cursor,
            fixed: None,
        })
    }
}

/// A newtype struct: transparent, as in the shape.
pub(super) struct Newtype<'c, 's, V> {
    pub(super) visitor: V,
    pub(super) cursor: &'c Cursor<'s>,
    pub(super) fixed: Option<u8>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Newtype<'_, '_, V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Checked {
            inner,
            cursor: self.cursor,
            fixed: self.fixed,
        })
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, Elements> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Wrap {
            visitor: seq,
            cursor: self.cursor,
            state: self.state,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Wrap {
            visitor: map,
            cursor: self.cursor,
            state: self.state,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, '_, A, Elements> {
    type Error = A::Error;
    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let (cursor, fixed) = (self.cursor, self.state.fixed);
        let surplus = self.state.surplus();
        let visitor = &mut self.visitor;
        self.state.next_in(cursor, Step::Element, |described| {
            if described {
                visitor.next_element_seed(Seed {
                    inner: seed,
                    cursor,
                    fixed,
                })
            } else {
                visitor.next_element_seed(surplus).map(|_| None)
            }
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.visitor.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, '_, A, Elements> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let cursor = self.cursor;
        let surplus = self.state.surplus();
        let visitor = &mut self.visitor;
        self.state.next_in(cursor, Step::KeyAt, |described| {
            if described {
                visitor.next_key_seed(Seed {
                    inner: seed,
                    cursor,
                    fixed: None,
                })
            } else {
                visitor.next_key_seed(surplus).map(|_| None)
            }
        })
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let cursor = self.cursor;
        cursor.within(Step::Value(self.state.next.saturating_sub(1)), || {
            self.visitor.next_value_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.visitor.size_hint()
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, Members> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_seq(Wrap {
            visitor: seq,
            cursor: self.cursor,
            state: self.state,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, '_, A, Members> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let cursor = self.cursor;
        let index = self.state.next;
        if index >= self.state.len {
            return cursor
                .noted(
                    self.visitor
                        .next_element_seed(Surplus("the value has more elements than its shape")),
                )
                .map(|_| None);
        }
        self.state.next += 1;
        let step = match self.state.fields {
            Some(fields) => {
                let ours = fields[index];
                let sent = cursor.name::<A::Error>()?;
                if name_bytes(ours) != sent {
                    return Err(cursor.fail(format_args!(
                        "expected field `{ours}`, got field `{}`",
                        String::from_utf8_lossy(sent)
                    )));
                }
                Step::Field(ours)
            }
            None => Step::Element(index),
        };
        cursor.within(step, || {
            self.visitor.next_element_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.state.len - self.state.next)
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, Variant> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(Wrap {
            visitor: data,
            cursor: self.cursor,
            state: self.state,
        })
    }
}

impl<'de, 'c, 's, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'c, 's, A, Variant> {
    type Error = A::Error;
    type Variant = Wrap<'c, 's, A::Variant, Variant>;
    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, access) = if self.state.by_name {
            let ((), access) = self
                .visitor
                .variant_seed(std::marker::PhantomData::<de::IgnoredAny>)
                .map(|(_, access)| ((), access))?;
            let name = de::value::StrDeserializer::<A::Error>::new(self.state.name);
            (seed.deserialize(name)?, access)
        } else {
            self.visitor.variant_seed(seed)?
        };
        Ok((
            value,
            Wrap {
                visitor: access,
                cursor: self.cursor,
                state: self.state,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, '_, A, Variant> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.expect_kind(variant::UNIT, "a unit variant")?;
        self.visitor.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.expect_kind(variant::NEWTYPE, "a newtype variant")?;
        let cursor = self.cursor;
        cursor.within(Step::Variant(self.state.name), || {
            self.visitor.newtype_variant_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.expect_kind(variant::TUPLE, "a tuple variant")?;
        let cursor = self.cursor;
        let sent = cursor.u32::<A::Error>()? as usize;
        if sent != len {
            return Err(cursor.fail(format_args!(
                "variant `{}`: expected {len} fields, got {sent}",
                self.state.name
            )));
        }
        cursor.within(Step::Variant(self.state.name), || {
            cursor.noted(self.visitor.tuple_variant(
                len,
                Wrap {
                    visitor,
                    cursor,
                    state: Members::tuple(len),
                },
            ))
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.expect_kind(variant::STRUCT, "a struct variant")?;
        let cursor = self.cursor;
        let sent = cursor.u32::<A::Error>()? as usize;
        let name = self.state.name;
        cursor.within(Step::Variant(name), || {
            if cursor.fields_match::<A::Error>(sent, fields)? {
                return cursor.noted(self.visitor.struct_variant(
                    fields,
                    Wrap {
                        visitor,
                        cursor,
                        state: Members::fields(fields),
                    },
                ));
            }
            // By name, as a struct's fields are (see `Checked::deserialize_struct`).
            cursor.noted(self.visitor.tuple_variant(
                sent,
                Wrap {
                    visitor,
                    cursor,
                    state: ByName::new(name, sent),
                },
            ))
        })
    }
}

impl<A> Wrap<'_, '_, A, Variant> {
    fn expect_kind<E: de::Error>(&self, kind: u8, expected: &str) -> Result<(), E> {
        if self.state.kind == kind {
            return Ok(());
        }
        let got = match self.state.kind {
            variant::UNIT => "a unit variant",
            variant::NEWTYPE => "a newtype variant",
            variant::TUPLE => "a tuple variant",
            variant::STRUCT => "a struct variant",
            _ => "an unknown kind of variant",
        };
        Err(self.cursor.fail(format_args!(
            "variant `{}`: expected {expected}, got {got}",
            self.state.name
        )))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, ByName> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let cursor = self.cursor;
        let failed_before = cursor.has_failed();
        let mut fields = Wrap {
            visitor: seq,
            cursor,
            state: self.state,
        };
        let name = fields.state.name;
        let value = self.visitor.visit_map(&mut fields);
        let value = match value {
            // A receiver that stopped before the last field (a visitor of its own) leaves
            // the rest unread: skip them, so that what follows stays in step.
            Ok(value) if fields.state.left > 0 || !fields.state.taken => {
                if !fields.state.taken {
                    fields.next_value_seed(std::marker::PhantomData::<de::IgnoredAny>)?;
                }
                while MapAccess::next_key::<de::IgnoredAny>(&mut fields)?.is_some() {
                    fields.next_value::<de::IgnoredAny>()?;
                }
                Ok(value)
            }
            other => other,
        };
        if value.is_err() && !failed_before && !cursor.has_failed() && !name.is_empty() {
            // The struct's own error (a missing, unknown or repeated field): named after it.
            cursor.failed_in(Step::Struct(name));
        }
        value
    }
}

impl<'de, A: SeqAccess<'de>> MapAccess<'de> for Wrap<'_, '_, A, ByName> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if self.state.left == 0 {
            return Ok(None);
        }
        let cursor = self.cursor;
        let name = cursor.name::<A::Error>()?;
        self.state.left -= 1;
        self.state.taken = false;
        self.state.field = (cursor.at.get() - name.len(), name.len());
        let name = String::from_utf8_lossy(name);
        seed.deserialize(de::value::StrDeserializer::<A::Error>::new(&name))
            .map(Some)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let cursor = self.cursor;
        let (at, len) = self.state.field;
        self.state.taken = true;
        cursor.within(Step::Sent { at, len }, || {
            self.visitor
                .next_element_seed(Seed {
                    inner: seed,
                    cursor,
                    fixed: None,
                })?
                .ok_or_else(|| cursor.fail("the value has fewer fields than its shape"))
        })
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.state.left)
    }
}

/// An enum variant read as a self-describing value (`deserialize_any`): its name alone
/// for a unit variant, otherwise a map of one entry, its name to its content (a tuple
/// variant's as a sequence, a struct variant's as a map of field names), as
/// self-describing formats such as JSON write an enum.
pub(super) struct AnyVariant {
    /// Where the variant's name lies in the shape.
    pub(super) name: (usize, usize),
    pub(super) kind: u8,
}

impl AnyVariant {
    fn step(&self) -> Step {
        Step::SentVariant {
            at: self.name.0,
            len: self.name.1,
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, AnyVariant> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let cursor = self.cursor;
        let (_, access) = data.variant_seed(std::marker::PhantomData::<de::IgnoredAny>)?;
        let (at, len) = self.state.name;
        let name = String::from_utf8_lossy(cursor.shape.get(at..at + len).unwrap_or_default());
        if self.state.kind == variant::UNIT {
            access.unit_variant()?;
            return self.visitor.visit_str(&name);
        }
        self.visitor.visit_map(OneVariant {
            name: &name,
            content: Some(VariantContent {
                access,
                cursor,
                variant: self.state,
            }),
        })
    }
}

/// The one entry of an enum variant read as a map.
struct OneVariant<'n, 'c, 's, A> {
    name: &'n str,
    /// The variant's content, until its value is taken.
    content: Option<VariantContent<'c, 's, A>>,
}

impl<'de, A: VariantAccess<'de>> MapAccess<'de> for OneVariant<'_, '_, '_, A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if self.content.is_none() {
            return Ok(None);
        }
        seed.deserialize(de::value::StrDeserializer::<A::Error>::new(self.name))
            .map(Some)
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let content = self
            .content
            .take()
            .ok_or_else(|| de::Error::custom("the variant's content was taken twice"))?;
        let (cursor, step) = (content.cursor, content.variant.step());
        cursor.within(step, || content.read(seed))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.content.is_some()))
    }
}

/// The content of a variant that is not a unit, as a deserializer of its own.
struct VariantContent<'c, 's, A> {
    access: A,
    cursor: &'c Cursor<'s>,
    variant: AnyVariant,
}

impl<'de, A: VariantAccess<'de>> VariantContent<'_, '_, A> {
    fn read<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let cursor = self.cursor;
        if self.variant.kind == variant::NEWTYPE {
            return self.access.newtype_variant_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            });
        }
        seed.deserialize(self)
    }
}

impl<'de, A: VariantAccess<'de>> Deserializer<'de> for VariantContent<'_, '_, A> {
    type Error = A::Error;
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        let cursor = self.cursor;
        let count = cursor.u32::<A::Error>()? as usize;
        match self.variant.kind {
            variant::TUPLE => cursor.noted(self.access.tuple_variant(
                count,
                Wrap {
                    visitor,
                    cursor,
                    state: Members::tuple(count),
                },
            )),
            variant::STRUCT => cursor.noted(self.access.tuple_variant(
                count,
                Wrap {
                    visitor,
                    cursor,
                    state: ByName::new("", count),
                },
            )),
            other => Err(cursor.fail(format_args!("unknown variant kind {other} in shape"))),
        }
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, '_, V, NamedEntries> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_map(Wrap {
            visitor: Wrap {
                visitor: map,
                cursor: self.cursor,
                state: self.state.entries,
            },
            cursor: self.cursor,
            state: self.state.key,
        })
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, '_, Wrap<'_, '_, A, Elements>, String> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.visitor.next_key::<String>()? else {
            return Ok(None);
        };
        let value = seed.deserialize(de::value::StrDeserializer::<A::Error>::new(&key))?;
        self.state = key;
        Ok(Some(value))
    }
    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let cursor = self.cursor;
        let step = Step::Key(std::mem::take(&mut self.state));
        let entries = &mut self.visitor;
        cursor.within(step, || {
            entries.visitor.next_value_seed(Seed {
                inner: seed,
                cursor,
                fixed: None,
            })
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.visitor.size_hint()
    }
}

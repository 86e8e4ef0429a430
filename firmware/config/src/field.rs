//! [`Field`]: where a value of one type lives inside a struct, as an offset. The key table reaches a
//! number, flag or text field through one of these, so those keys cost a table row each, not a pair of
//! accessor functions (each with its own unwind-table entry: 2,624 B on aarch64 for the 33 keys,
//! BENCHMARKS.md). A keyword key (a word out of a fixed list naming an enum's value) likewise: a
//! [`WordField`], the field's offset and its [`Words`] (each value's byte and words).
//!
//! The only `unsafe` in this crate. A `Field` is made only by [`field!`], from `offset_of!` of a path
//! the compiler has checked to name a field of the stated type; `Words` only by [`words!`], from
//! the bytes of values of a one-byte type, every value named (both checked by the compiler).
#![allow(unsafe_code)]

use core::marker::PhantomData;

use crate::error::Reason;

/// A field of type `V` inside every `T`, at a fixed offset. Made by [`field!`].
pub(crate) struct Field<T, V> {
    offset: usize,
    of: PhantomData<fn(&T) -> &V>,
}

impl<T, V> Field<T, V> {
    /// # Safety
    /// `offset` is `core::mem::offset_of!(T, path)` for a `path` whose type is `V`.
    pub(crate) const unsafe fn at(offset: usize) -> Self {
        Self {
            offset,
            of: PhantomData,
        }
    }

    /// The field in `t`.
    #[inline]
    pub(crate) fn get<'a>(&self, t: &'a T) -> &'a V {
        // SAFETY: by `at`'s contract a `V` lives at `offset` inside every `T`, so the pointer is in
        // bounds, aligned and initialized; the result borrows `t` (shared) for as long as `t`.
        unsafe {
            &*core::ptr::from_ref(t)
                .cast::<u8>()
                .add(self.offset)
                .cast::<V>()
        }
    }

    /// The field in `t`, to change.
    #[inline]
    pub(crate) fn get_mut<'a>(&self, t: &'a mut T) -> &'a mut V {
        // SAFETY: as in `get`; the pointer comes from the unique borrow of `t` and the result holds
        // that borrow, so nothing else reaches `t` meanwhile.
        unsafe {
            &mut *core::ptr::from_mut(t)
                .cast::<u8>()
                .add(self.offset)
                .cast::<V>()
        }
    }
}

/// `field!(T, a.b: V)`: the [`Field`] of `T` at the path `a.b`, which must have the type `V`.
macro_rules! field {
    ($t:ty, $($f:ident).+ : $v:ty) => {{
        // The path names a `V` inside `T`: checked by the compiler, never called.
        const _: fn(&$t) -> &$v = |t| &t.$($f).+;
        #[allow(unsafe_code)]
        // SAFETY: the offset of that path, whose type is `V` (checked just above).
        const FIELD: $crate::field::Field<$t, $v> =
            unsafe { $crate::field::Field::at(core::mem::offset_of!($t, $($f).+)) };
        FIELD
    }};
}
pub(crate) use field;

/// The words that name the values of a one-byte type (each value's byte, the word written for it,
/// the other words read as it), and the written words joined for an error and for the reference.
pub(crate) struct WordList {
    values: &'static [(u8, &'static str, &'static [&'static str])],
    one_of: &'static str,
    #[cfg(feature = "reference")]
    form: &'static str,
}

impl WordList {
    /// The byte of the value `word` names; not one of them: [`Reason::OneOf`] with the written words.
    fn byte(&self, word: &str) -> Result<u8, Reason> {
        self.values
            .iter()
            .find(|(_, written, also)| *written == word || also.contains(&word))
            .map(|&(b, ..)| b)
            .ok_or(Reason::OneOf(self.one_of))
    }

    /// The word written for the value whose byte is `b` (every value has one: checked by [`words!`]).
    fn word(&self, b: u8) -> &'static str {
        self.values
            .iter()
            .find(|&&(v, ..)| v == b)
            .map_or("", |&(_, written, _)| written)
    }
}

/// The words of `V`, a one-byte type every byte of which is initialized (a field-less enum, `bool`).
/// Made by [`words!`], which checks that they name every value of `V`, each once.
pub(crate) struct Words<V> {
    list: WordList,
    of: PhantomData<fn(V) -> V>,
}

impl<V: Copy> Words<V> {
    /// # Safety
    /// `V` is one byte long, and each byte in `values` is the representation of a value of `V`.
    pub(crate) const unsafe fn new(
        values: &'static [(u8, &'static str, &'static [&'static str])],
        one_of: &'static str,
        form: &'static str,
    ) -> Self {
        #[cfg(not(feature = "reference"))]
        let _ = form;
        Self {
            list: WordList {
                values,
                one_of,
                #[cfg(feature = "reference")]
                form,
            },
            of: PhantomData,
        }
    }

    /// The value `word` names.
    pub(crate) fn parse(&self, word: &str) -> Result<V, Reason> {
        let b = self.list.byte(word)?;
        // SAFETY: by `new`'s contract `V` is one byte long and `b` represents a value of `V`.
        Ok(unsafe { core::mem::transmute_copy::<u8, V>(&b) })
    }

    /// The word written for `v`.
    pub(crate) fn word(&self, v: V) -> &'static str {
        // SAFETY: by `new`'s contract `V` is one byte long, and that byte of a value is initialized.
        self.list
            .word(unsafe { core::mem::transmute_copy::<V, u8>(&v) })
    }

    /// The written words, ` | `-separated (the reference's form of the key).
    #[cfg(feature = "reference")]
    pub(crate) const fn form(&self) -> &'static str {
        self.list.form
    }
}

/// A field of `T` whose values are named by [`Words`], its type left out (so one key kind serves
/// every such field): the field's offset and its words.
pub(crate) struct WordField<T> {
    offset: usize,
    words: &'static WordList,
    of: PhantomData<fn(&T)>,
}

impl<T> WordField<T> {
    /// The field `field`, whose values `words` names.
    pub(crate) const fn new<V>(field: Field<T, V>, words: &'static Words<V>) -> Self {
        Self {
            offset: field.offset,
            words: &words.list,
            of: PhantomData,
        }
    }

    /// Sets the field in `t` to the value `word` names.
    pub(crate) fn set(&self, t: &mut T, word: &str) -> Result<(), Reason> {
        let b = self.words.byte(word)?;
        // SAFETY: a `V` of one byte lives at `offset` inside every `T` (the contracts of `Field::at`
        // and `Words::new`), and `b` represents a value of `V`; the pointer comes from the unique
        // borrow of `t`.
        unsafe { *core::ptr::from_mut(t).cast::<u8>().add(self.offset) = b };
        Ok(())
    }

    /// The word written for the field's value in `t`.
    pub(crate) fn get(&self, t: &T) -> &'static str {
        // SAFETY: as in `set`: the one byte of a `V` inside `t`, initialized as every value's is.
        self.words
            .word(unsafe { *core::ptr::from_ref(t).cast::<u8>().add(self.offset) })
    }
}

/// `words!(V: "word" | "other word" => V::A, "b" => V::B)`: the [`Words`] (`&'static`) of `V`, a
/// one-byte type (a field-less enum, `bool`); the first word of each value is the one written, the
/// first words joined make the error's and the reference's list.
macro_rules! words {
    ($v:ty: $w0:literal $(| $a0:literal)* => $($x0:ident)::+
        $(, $w:literal $(| $a:literal)* => $($x:ident)::+)* $(,)?) => {{
        // Every value of `V` named, each once (else a pattern is missing or unreachable): checked by
        // the compiler, never called.
        const _: fn($v) = |v| match v {
            $($x0)::+ => {}
            $($($x)::+ => {})*
        };
        // (`unnecessary_transmutes`: for `bool`, which has `u8::from` too.)
        #[allow(unsafe_code, unnecessary_transmutes)]
        // SAFETY: each byte is a value's representation, taken by a `transmute` to `u8` that only
        // compiles if `V` is one byte long and only evaluates if that byte is initialized.
        const WORDS: $crate::field::Words<$v> = unsafe {
            $crate::field::Words::new(
                &[
                    (core::mem::transmute::<$v, u8>($($x0)::+), $w0, &[$($a0),*]),
                    $((core::mem::transmute::<$v, u8>($($x)::+), $w, &[$($a),*]),)*
                ],
                concat!($w0 $(, ", ", $w)*),
                concat!($w0 $(, " | ", $w)*),
            )
        };
        &WORDS
    }};
}
pub(crate) use words;

#[cfg(test)]
mod tests {

    #[derive(Default)]
    struct Inner {
        _pad: u8,
        n: u32,
        flag: bool,
    }

    #[derive(Default)]
    struct Outer {
        _a: u64,
        inner: Inner,
        path: Option<alloc::string::String>,
    }

    #[test]
    fn a_field_reads_and_writes_the_named_member() {
        let n = field!(Outer, inner.n: u32);
        let flag = field!(Outer, inner.flag: bool);
        let path = field!(Outer, path: Option<alloc::string::String>);
        let mut o = Outer::default();
        *n.get_mut(&mut o) = 7;
        *flag.get_mut(&mut o) = true;
        *path.get_mut(&mut o) = Some("/etc".into());
        assert_eq!(o.inner.n, 7);
        assert!(o.inner.flag);
        assert_eq!(o.path.as_deref(), Some("/etc"));
        o.inner.n = 9;
        assert_eq!(*n.get(&o), 9);
        assert_eq!(path.get(&o).as_deref(), Some("/etc"));
    }
}

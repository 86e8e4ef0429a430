//! [`Field`]: where a value of one type lives inside a struct, as an offset. The key table reaches a
//! number, flag or path field through one of these, so those keys cost a table row each, not a pair of
//! accessor functions (each with its own unwind-table entry: 2,624 B on aarch64 for the 33 keys,
//! BENCHMARKS.md).
//!
//! The only `unsafe` in this crate. A `Field` is made only by [`field!`], from `offset_of!` of a path
//! the compiler has checked to name a field of the stated type.
#![allow(unsafe_code)]

use core::marker::PhantomData;

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

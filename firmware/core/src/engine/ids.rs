//! A session's outstanding queries by upstream message ID: an open-addressing table (linear
//! probing, deletion by backward shift). The engine draws the IDs at random, so an ID's low bits
//! are its hash; the table is at most half full, so a lookup reads one or two entries. It replaced a
//! `BTreeMap`, whose searches (several per query: the ID draw, the send, the answer, the loss
//! probe's bookkeeping) were a visible part of the CPU per query.

use alloc::vec::Vec;

use super::table::QueryRef;

/// The table's first size (entries), and the size above which an emptied table gives its memory
/// back.
const MIN_SLOTS: usize = 16;
const KEEP_SLOTS: usize = 256;

#[derive(Debug, Default)]
pub(super) struct IdMap {
    /// Empty, or a power of two long.
    slots: Vec<Option<(u16, QueryRef)>>,
    len: usize,
}

impl IdMap {
    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index of `id`'s entry.
    #[inline]
    fn find(&self, id: u16) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = usize::from(id) & mask;
        // Ends: the table always has an empty entry (it is at most half full).
        loop {
            match self.slots[i] {
                None => return None,
                Some((k, _)) if k == id => return Some(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    #[inline]
    pub(super) fn get(&self, id: u16) -> Option<QueryRef> {
        self.find(id).and_then(|i| self.slots[i].map(|(_, r)| r))
    }

    #[inline]
    pub(super) fn contains(&self, id: u16) -> bool {
        self.find(id).is_some()
    }

    /// Maps `id` to `r`; returns what it mapped to before.
    pub(super) fn insert(&mut self, id: u16, r: QueryRef) -> Option<QueryRef> {
        if let Some(i) = self.find(id) {
            return self.slots[i].replace((id, r)).map(|(_, old)| old);
        }
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = usize::from(id) & mask;
        while self.slots[i].is_some() {
            i = (i + 1) & mask;
        }
        self.slots[i] = Some((id, r));
        self.len += 1;
        None
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = core::mem::replace(&mut self.slots, alloc::vec![None; size]);
        let mask = size - 1;
        for (id, r) in old.into_iter().flatten() {
            let mut i = usize::from(id) & mask;
            while self.slots[i].is_some() {
                i = (i + 1) & mask;
            }
            self.slots[i] = Some((id, r));
        }
    }

    /// Unmaps `id`; returns what it mapped to.
    pub(super) fn remove(&mut self, id: u16) -> Option<QueryRef> {
        let mut hole = self.find(id)?;
        let (_, r) = self.slots[hole].take()?;
        self.len -= 1;
        if self.len == 0 && self.slots.len() > KEEP_SLOTS {
            self.slots = Vec::new();
            return Some(r);
        }
        // Backward shift: each later entry of the run that may live in the hole moves into it, so
        // no lookup meets an empty entry before its key.
        let mask = self.slots.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some((k, _)) = self.slots[j] else {
                break;
            };
            let home = usize::from(k) & mask;
            // The entry at `j` stays if its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        Some(r)
    }

    /// The queries, in no particular order.
    pub(super) fn into_values(self) -> impl Iterator<Item = QueryRef> {
        self.slots.into_iter().flatten().map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    fn r(n: usize) -> QueryRef {
        QueryRef::for_test(n as u32)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // A narrow key range (and keys that share low bits) makes collisions, long runs and
        // wrap-around at the table's end common.
        let key = prop_oneof![
            0u16..64,
            (0u16..8).prop_map(|k| k * 1024 + 15),
            any::<u16>()
        ];
        prop_oneof![key.clone().prop_map(Op::Insert), key.prop_map(Op::Remove)]
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec(op(), 0..600)) {
            let mut m = IdMap::default();
            let mut model = BTreeMap::new();
            for (n, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Insert(k) => prop_assert_eq!(m.insert(k, r(n)), model.insert(k, r(n))),
                    Op::Remove(k) => prop_assert_eq!(m.remove(k), model.remove(&k)),
                }
                prop_assert_eq!(m.len(), model.len());
                prop_assert!(m.slots.is_empty() || m.len() * 2 <= m.slots.len());
            }
            for (k, v) in &model {
                prop_assert_eq!(m.get(*k), Some(*v));
            }
            for k in [0u16, 1, 15, 63, 1039, 65535] {
                prop_assert_eq!(m.contains(k), model.contains_key(&k));
            }
            let mut values: Vec<QueryRef> = m.into_values().collect();
            values.sort();
            let mut expected: Vec<QueryRef> = model.into_values().collect();
            expected.sort();
            prop_assert_eq!(values, expected);
        }
    }

    #[test]
    fn an_entry_takes_16_octets() {
        assert_eq!(size_of::<Option<(u16, QueryRef)>>(), 16);
    }

    #[test]
    fn an_emptied_large_table_gives_its_memory_back() {
        let mut m = IdMap::default();
        for k in 0..1000u16 {
            m.insert(k, r(usize::from(k)));
        }
        assert!(m.slots.len() >= 2000);
        for k in 0..1000u16 {
            assert_eq!(m.remove(k), Some(r(usize::from(k))));
        }
        assert!(m.is_empty());
        assert!(m.slots.is_empty());
        assert_eq!(m.get(7), None);
        assert_eq!(m.remove(7), None);
    }
}

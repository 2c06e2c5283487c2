//! [`Memo`]: the metric handles each thread used last, found again by the address of the
//! names they were looked up by, without hashing the names or locking a map.
//!
//! A request's handles are looked up by names shared from the configuration (the endpoint's
//! id, the client's) and the model it asked for: the same few, request after request. A slot
//! is picked by the address of one name and holds the names it was filled with; a hit
//! compares them (at once when they are the same allocation). A miss (another name, another
//! stack's handles) looks in the map as before and takes the slot.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per kind of handle, per thread (a power of two).
const SLOTS: usize = 8;

/// A handle of kind `V` found by the key `K`, for the handles of one owner (see [`owner`]).
pub(super) struct Memo<K, V>([Option<(u64, K, V)>; SLOTS]);

impl<K, V> Memo<K, V> {
    pub(super) const fn new() -> Self {
        Self([const { None }; SLOTS])
    }
}

/// A number no other owner of handles has: the slots of a stack built again (a reload) are not
/// taken for the old one's.
pub(super) fn owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The slot of a name at `address`.
pub(super) fn slot(address: *const u8) -> usize {
    // Allocations are 16-byte aligned: the bits above those tell names apart.
    address as usize >> 4
}

/// Runs `use_it` with the handle in `memo`'s slot `slot` (any number: it is taken modulo the
/// slots) when the handle is `owner`'s and its key is the one `is_key` looks for; otherwise
/// with `find()`'s, which then takes the slot. A memo out of reach (borrowed further up, or
/// gone with its ending thread) leaves `find` to find it every time.
pub(super) fn with<K, V, R>(
    memo: &'static std::thread::LocalKey<RefCell<Memo<K, V>>>,
    (owner, slot): (u64, usize),
    is_key: impl Fn(&K) -> bool,
    find: impl FnOnce() -> (K, V),
    use_it: impl FnOnce(&V) -> R,
) -> R {
    let mut pending = Some((find, use_it));
    let memoized = memo.try_with(|memo| {
        let mut memo = memo.try_borrow_mut().ok()?;
        let (find, use_it) = pending.take()?;
        let entry = &mut memo.0[slot % SLOTS];
        let value = match entry {
            Some((o, key, value)) if *o == owner && is_key(key) => value,
            _ => {
                let (key, value) = find();
                &entry.insert((owner, key, value)).2
            }
        };
        Some(use_it(value))
    });
    if let Ok(Some(result)) = memoized {
        return result;
    }
    let (find, use_it) = pending.take().expect("taken only by a memo within reach");
    use_it(&find().1)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use super::*;

    thread_local! {
        static TEST: RefCell<Memo<Arc<str>, u32>> = const { RefCell::new(Memo::new()) };
    }

    /// Looks `name` up for `owner` the way the handles are, all names in one slot (so that each
    /// takes another's): the value `find` makes, and whether it had to be made.
    fn look_up(owner: u64, name: &Arc<str>, made: u32) -> (u32, bool) {
        let found = Cell::new(false);
        let value = with(
            &TEST,
            (owner, 0),
            |key: &Arc<str>| **key == **name,
            || {
                found.set(true);
                (name.clone(), made)
            },
            |value| *value,
        );
        (value, found.get())
    }

    #[test]
    fn a_handle_is_found_again_for_its_name_and_owner_only() {
        let (first, second) = (owner(), owner());
        let name: Arc<str> = "endpoint-a".into();
        assert_eq!(look_up(first, &name, 1), (1, true), "made the first time");
        assert_eq!(look_up(first, &name, 2), (1, false), "then found");
        // Another owner's handles are its own, even for the same name.
        assert_eq!(look_up(second, &name, 4), (4, true));
        // Another name is never given this one's handle.
        let other: Arc<str> = "endpoint-b".into();
        assert_eq!(look_up(first, &other, 5), (5, true));
        assert_eq!(look_up(first, &name, 6), (6, true), "its slot was taken");
    }

    #[test]
    fn a_memo_in_use_does_not_stop_a_look_up() {
        let owner = owner();
        let name: Arc<str> = "endpoint-c".into();
        // A look-up from inside another (the memo is borrowed): found without the memo.
        let inner = TEST.with_borrow(|_| look_up(owner, &name, 7));
        assert_eq!(inner, (7, true));
    }
}

//! The topic filters one session subscribes to. Most sessions have one,
//! held in place; a few are a list; past that a hash set, so that adding
//! or dropping one costs the same however many a session has (one
//! UNSUBSCRIBE of 100,000 filters must not walk the list 100,000 times).

use std::collections::HashSet;
use std::rc::Rc;

/// Filters a list holds before it becomes a set.
const LIST_MAX: usize = 16;

#[derive(Debug)]
pub enum Filters {
    One(Rc<str>),
    /// None, or two up to `LIST_MAX`.
    Few(Vec<Rc<str>>),
    /// Boxed, so that every session pays the size of a `Vec`, not of a set.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<Rc<str>>>),
}

impl Default for Filters {
    fn default() -> Self {
        Filters::Few(Vec::new())
    }
}

impl Filters {
    #[cfg(any(test, fuzzing))]
    pub fn len(&self) -> usize {
        match self {
            Filters::One(_) => 1,
            Filters::Few(list) => list.len(),
            Filters::Many(set) => set.len(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rc<str>> {
        let (one, few, many) = match self {
            Filters::One(f) => (Some(f), None, None),
            Filters::Few(list) => (None, Some(list.iter()), None),
            Filters::Many(set) => (None, None, Some(set.iter())),
        };
        one.into_iter()
            .chain(few.into_iter().flatten())
            .chain(many.into_iter().flatten())
    }

    /// Adds `filter`, which the session has no subscription to yet.
    pub fn insert(&mut self, filter: Rc<str>) {
        *self = match std::mem::take(self) {
            Filters::Few(list) if list.is_empty() => Filters::One(filter),
            Filters::One(first) => Filters::Few(vec![first, filter]),
            Filters::Few(mut list) if list.len() < LIST_MAX => {
                list.push(filter);
                Filters::Few(list)
            }
            Filters::Few(list) => {
                let mut set: HashSet<Rc<str>> = list.into_iter().collect();
                set.insert(filter);
                Filters::Many(Box::new(set))
            }
            Filters::Many(mut set) => {
                set.insert(filter);
                Filters::Many(set)
            }
        };
    }

    /// Drops `filter`; false when it was not there. Room a burst took is
    /// given back as the filters go.
    pub fn remove(&mut self, filter: &str) -> bool {
        match self {
            Filters::One(f) if **f == *filter => {
                *self = Filters::default();
                true
            }
            Filters::One(_) => false,
            Filters::Few(list) => match list.iter().position(|f| **f == *filter) {
                Some(i) => {
                    list.swap_remove(i);
                    if list.len() == 1 {
                        *self = Filters::One(list.pop().expect("one left"));
                    }
                    true
                }
                None => false,
            },
            Filters::Many(set) => {
                let removed = set.remove(filter);
                if set.len() <= LIST_MAX / 2 {
                    *self = Filters::Few(set.drain().collect());
                } else if set.len() < set.capacity() / 4 {
                    set.shrink_to(set.len() * 2);
                }
                removed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(f: &Filters) -> Vec<String> {
        let mut v: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn one_in_place_a_few_in_a_list_many_in_a_set_and_back() {
        let mut f = Filters::default();
        f.insert("a".into());
        assert!(matches!(f, Filters::One(_)));
        for i in 0..100 {
            f.insert(format!("t/{i}").into());
        }
        assert!(matches!(f, Filters::Many(_)));
        assert_eq!(f.len(), 101);
        assert!(!f.remove("t/100"));
        for i in 0..100 {
            assert!(f.remove(&format!("t/{i}")));
        }
        assert_eq!(sorted(&f), ["a"]);
        assert!(matches!(f, Filters::One(_)), "the set is given back");
        assert!(f.remove("a"));
        assert_eq!(f.len(), 0);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn no_bigger_than_a_vec() {
        assert_eq!(
            std::mem::size_of::<Filters>(),
            std::mem::size_of::<Vec<u8>>()
        );
    }
}

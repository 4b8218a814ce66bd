//! A list that holds a single item in place and allocates only for two or
//! more. Most topics have one subscriber and most sessions one
//! subscription; every idle connection would otherwise pay a heap
//! allocation for each.

use std::ops::{Deref, DerefMut};

#[derive(Debug, Clone)]
pub enum OneOrMany<T> {
    One(T),
    /// None, or two and more.
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    pub fn push(&mut self, item: T) {
        *self = match std::mem::take(self) {
            OneOrMany::Many(list) if list.is_empty() => OneOrMany::One(item),
            OneOrMany::One(first) => OneOrMany::Many(vec![first, item]),
            OneOrMany::Many(mut list) => {
                list.push(item);
                OneOrMany::Many(list)
            }
        };
    }

    /// Keeps the items `keep` says yes to; a list left with one gives its
    /// allocation back.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        *self = match std::mem::take(self) {
            OneOrMany::One(item) if keep(&item) => OneOrMany::One(item),
            OneOrMany::One(_) => OneOrMany::default(),
            OneOrMany::Many(mut list) => {
                list.retain(keep);
                if list.len() == 1 {
                    OneOrMany::One(list.remove(0))
                } else {
                    OneOrMany::Many(list)
                }
            }
        };
    }
}

impl<T> Deref for OneOrMany<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            OneOrMany::One(item) => std::slice::from_ref(item),
            OneOrMany::Many(list) => list,
        }
    }
}

impl<T> DerefMut for OneOrMany<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            OneOrMany::One(item) => std::slice::from_mut(item),
            OneOrMany::Many(list) => list,
        }
    }
}

impl<'a, T> IntoIterator for &'a OneOrMany<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_item_in_place_more_in_a_vec_and_back() {
        let mut list = OneOrMany::default();
        assert!(list.is_empty());
        list.push(1);
        assert!(matches!(list, OneOrMany::One(1)));
        list.push(2);
        list.push(3);
        assert_eq!(*list, [1, 2, 3]);
        list[0] = 4;
        list.retain(|&i| i != 2);
        assert_eq!(*list, [4, 3]);
        list.retain(|&i| i == 3);
        assert!(matches!(list, OneOrMany::One(3)), "allocation given back");
        list.retain(|_| true);
        assert_eq!(*list, [3]);
        list.retain(|_| false);
        assert!(list.is_empty());
        list.push(5);
        assert_eq!(*list, [5]);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn no_bigger_than_a_vec() {
        use std::mem::size_of;
        assert_eq!(
            size_of::<OneOrMany<std::rc::Rc<str>>>(),
            size_of::<Vec<u8>>()
        );
        assert_eq!(size_of::<OneOrMany<super::super::topic::Sub>>(), 24);
    }
}

//! Structs of counters defined once, with how they add up and are named.
//!
//! [`counters!`] declares a struct of `u64` counters, each
//! with its doc comment and its metric name, and gives it `add` (sum the
//! counters of another, to total several workers) and `named` (every
//! counter with its metric name and its doc comment as help text), so an
//! exporter writes all of them and a counter added later cannot be left
//! out of either. A struct may end in one nested struct of counters, which
//! `add` sums too and which names its own.

/// Declares a struct of counters: `field as "metric_name",` lines, each
/// with its doc comment, optionally followed by `; nested: Type` (a struct
/// of counters of its own). See the module header.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $ty:ident {
            $( $(#[doc = $doc:literal])* $field:ident as $name:literal, )*
            $( ; $(#[doc = $sdoc:literal])* $sub:ident: $subty:ty )?
        }
    ) => {
        $(#[$meta])*
        pub struct $ty {
            $( $(#[doc = $doc])* pub $field: u64, )*
            $( $(#[doc = $sdoc])* pub $sub: $subty, )?
        }

        impl $ty {
            /// How many counters [`Self::named`] lists.
            pub const NAMED: usize = [$(stringify!($field)),*].len();

            /// Adds `other`'s counters to these.
            pub fn add(&mut self, other: &$ty) {
                $( self.$field += other.$field; )*
                $( self.$sub.add(&other.$sub); )?
            }

            /// Every counter of this struct (not of a nested one) with its
            /// metric name and its description.
            pub fn named(&self) -> [(&'static str, &'static str, u64); Self::NAMED] {
                [$( ($name, concat!($($doc),*).trim_ascii_start(), self.$field) ),*]
            }
        }
    };
}

pub(crate) use counters;

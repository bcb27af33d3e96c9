//! One-byte enumerated fields.
//!
//! `byte_enum!` declares a `#[repr(u8)]` enum together with `from_u8`, which
//! maps an unassigned byte to `WireError::UnknownValue` naming the field, so
//! every coded field is decoded the same way.

/// Declares a one-byte wire enum: `byte_enum! { "field name", docs, pub
/// enum Name { docs Variant = value, ... } }`.
macro_rules! byte_enum {
    (
        $field:literal,
        $(#[$meta:meta])*
        pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Decodes the wire byte; an unassigned value is an error naming
            /// the field.
            pub fn from_u8(v: u8) -> Result<Self, $crate::wire::WireError> {
                match v {
                    $($value => Ok($name::$variant),)+
                    other => Err($crate::wire::WireError::UnknownValue {
                        field: $field,
                        value: other.into(),
                    }),
                }
            }
        }
    };
}

pub(crate) use byte_enum;

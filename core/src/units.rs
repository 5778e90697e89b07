//! Numbers with a unit: one newtype per unit, so a height is never passed where a nonce or
//! a timestamp goes. Each is stored, hashed and sent exactly as the number inside it (borsh
//! and serde see through it): a newtype changes no byte of any format.

/// Declares a newtype over a number with the traits every unit has: compared, hashed,
/// copied, and encoded (borsh, serde) as the bare number.
#[macro_export]
macro_rules! unit_newtype {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($field_vis:vis $inner:ty);) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            Default,
            ::borsh::BorshSerialize,
            ::borsh::BorshDeserialize,
            ::serde::Serialize,
            ::serde::Deserialize,
        )]
        #[serde(transparent)]
        $vis struct $name($field_vis $inner);
    };
    // Shown as the bare number (an amount is shown in coins instead).
    (shown as is: $(#[$meta:meta])* $vis:vis struct $name:ident($field_vis:vis $inner:ty);) => {
        $crate::unit_newtype! { $(#[$meta])* $vis struct $name($field_vis $inner); }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

unit_newtype! {
    shown as is:
    /// A moment as milliseconds since the Unix epoch (a block's timestamp, a clock's
    /// reading).
    pub struct TimestampMs(pub u64);
}

impl TimestampMs {
    /// `ms` milliseconds later, or the last representable moment (a clock plus a drift
    /// taken from a spec must not overflow).
    pub fn saturating_add_ms(self, ms: u64) -> TimestampMs {
        TimestampMs(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to this moment, negative if `earlier` is later (a
    /// block's solve time: timestamps need not increase).
    pub fn signed_ms_since(self, earlier: TimestampMs) -> i64 {
        self.0 as i64 - earlier.0 as i64
    }

    /// Milliseconds from `earlier` to this moment (0 if `earlier` is later).
    pub fn ms_since(self, earlier: TimestampMs) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A moment plus milliseconds (for tests and tools: consensus code adds with
/// `saturating_add_ms`).
impl std::ops::Add<u64> for TimestampMs {
    type Output = TimestampMs;
    fn add(self, ms: u64) -> TimestampMs {
        TimestampMs(self.0 + ms)
    }
}

impl std::fmt::Debug for TimestampMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TimestampMs({})", self.0)
    }
}

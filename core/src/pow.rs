//! Proof of work: compact targets, cumulative work, and the per-block difficulty retarget
//! (ASERT, as in Bitcoin Cash's aserti3-2d), all in integer arithmetic.

use crate::hash::Hash256;
use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;

// The macro's own methods carry no docs of ours.
#[allow(clippy::manual_div_ceil, clippy::assign_op_pattern, missing_docs)]
mod uints {
    uint::construct_uint! {
        /// 256-bit unsigned integer for targets and work.
        pub struct U256(4);
    }
    uint::construct_uint! {
        /// 512-bit intermediate for the retarget multiplication.
        pub struct U512(8);
    }
}
pub use uints::{U256, U512};

fn widen(value: U256) -> U512 {
    let mut words = [0u64; 8];
    words[..4].copy_from_slice(&value.0);
    U512(words)
}

/// A target in Bitcoin's compact "nBits" form: one exponent byte, three mantissa bytes.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct CompactTarget(pub u32);

impl fmt::Debug for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactTarget({:#010x})", self.0)
    }
}

/// A block is valid when its hash, read as a big-endian number, is at or under its target.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Target(U256);

/// Bits or text that are no target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Compact bits that expand to no positive 256-bit number.
    #[error("compact target {0:#010x} is negative, zero or overflows 256 bits")]
    BadCompact(u32),
    /// Text that is not 32 bytes of hex.
    #[error("target {0:?} is not 64 hex characters")]
    BadHex(String),
    /// Zero, which no hash meets.
    #[error("target is zero: no hash could ever meet it")]
    Zero,
}

impl Target {
    /// `value` as a target (not zero).
    pub fn from_u256(value: U256) -> Result<Target, TargetError> {
        if value.is_zero() {
            return Err(TargetError::Zero);
        }
        Ok(Target(value))
    }

    /// The number.
    pub fn as_u256(&self) -> U256 {
        self.0
    }

    /// The largest target whose expected number of hashes per block is `hashes`.
    pub fn for_expected_hashes(hashes: u64) -> Target {
        let hashes = U256::from(hashes.max(1));
        Target((U256::MAX / hashes).max(U256::one()))
    }

    /// A target from 64 hex digits, big-endian.
    pub fn from_hex(text: &str) -> Result<Target, TargetError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| TargetError::BadHex(text.to_string()))?;
        Target::from_u256(U256::from_big_endian(&bytes))
    }

    /// 64 hex digits, big-endian.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_big_endian())
    }

    /// Whether `hash`, read as a big-endian number, is at most this target.
    pub fn is_met_by(&self, hash: &Hash256) -> bool {
        U256::from_big_endian(&hash.0) <= self.0
    }

    /// The target as 32 big-endian bytes: a hash meets it when `hash.0 <= bytes`
    /// (byte-wise order is numeric order), which a nonce search can test per hash cheaply.
    pub fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_big_endian()
    }

    /// The compact form, rounded down (never easier than `self`).
    pub fn to_compact(&self) -> CompactTarget {
        let mut size = self.0.bits().div_ceil(8) as u32;
        let mut mantissa: u32 = if size <= 3 {
            (self.0.low_u64() << (8 * (3 - size))) as u32
        } else {
            (self.0 >> (8 * (size - 3)) as usize).low_u32()
        };
        // The mantissa's top bit is a sign bit in this format; move into the next byte.
        if mantissa & 0x0080_0000 != 0 {
            mantissa >>= 8;
            size += 1;
        }
        CompactTarget(mantissa | (size << 24))
    }

    /// The hashes a block at this target is expected to take: 2^256 / (target + 1).
    pub fn work(&self) -> Work {
        // 2^256 / (target + 1), computed without 257-bit numbers.
        Work((!self.0 / (self.0 + U256::one())) + U256::one())
    }
}

impl CompactTarget {
    /// The full target (Bitcoin's compact form: a byte of size, 23 bits of mantissa).
    pub fn to_target(self) -> Result<Target, TargetError> {
        let bad = TargetError::BadCompact(self.0);
        let size = self.0 >> 24;
        let mantissa = self.0 & 0x007f_ffff;
        if self.0 & 0x0080_0000 != 0 || mantissa == 0 {
            return Err(bad);
        }
        let value = if size <= 3 {
            U256::from(mantissa >> (8 * (3 - size)))
        } else {
            let shift = 8 * (size - 3);
            if shift >= 256 {
                return Err(bad);
            }
            let value = U256::from(mantissa) << shift as usize;
            if value >> shift as usize != U256::from(mantissa) {
                return Err(bad);
            }
            value
        };
        Target::from_u256(value).map_err(|_| bad)
    }
}

/// Expected number of hashes to find blocks; summed along a chain for fork choice.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Work(U256);

impl Work {
    /// No work.
    pub const ZERO: Work = Work(U256::zero());

    /// The sum, or None past 2^256.
    pub fn checked_add(self, other: Work) -> Option<Work> {
        self.0.checked_add(other.0).map(Work)
    }

    /// 32 bytes, big-endian (as stored).
    pub fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_big_endian()
    }

    /// From 32 bytes, big-endian.
    pub fn from_be_bytes(bytes: &[u8; 32]) -> Work {
        Work(U256::from_big_endian(bytes))
    }

    /// The number.
    pub fn as_u256(&self) -> U256 {
        self.0
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl BorshSerialize for Work {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(&self.to_be_bytes())
    }
}

impl BorshDeserialize for Work {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        Ok(Work::from_be_bytes(&<[u8; 32]>::deserialize_reader(
            reader,
        )?))
    }
}

/// Parameters of the retarget, from the chain spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetargetParams {
    /// The interval blocks should come at.
    pub target_block_time_ms: u64,
    /// How long a chain must run late (early) for the difficulty to halve (double).
    pub half_life_ms: u64,
    /// The easiest target.
    pub pow_limit: Target,
}

/// The target of the block after `parent`, given how long `parent` took to find
/// (`parent.timestamp - grandparent.timestamp`, possibly negative).
///
/// ASERT applied block to block: target × 2^((solve_time − ideal) / half_life). The
/// factors telescope, so this equals absolute ASERT anchored at any earlier block, except
/// that clamping at the PoW limit re-anchors: a chain left idle for a month becomes easy
/// once, then climbs back at one halving of the target per half-life of fast blocks.
pub fn next_target(parent: Target, parent_solve_time_ms: i64, params: &RetargetParams) -> Target {
    let ideal = params.target_block_time_ms as i128;
    let half_life = params.half_life_ms.max(1) as i128;
    // 16.16 fixed point, truncated toward zero as in aserti3-2d.
    let exponent: i128 = ((parent_solve_time_ms as i128 - ideal) * 65536) / half_life;
    let shifts: i128 = exponent >> 16; // floor
    let frac = (exponent & 0xffff) as u128;
    // 2^frac for frac in [0, 1), by aserti3-2d's cubic approximation (error < 0.013 %).
    let factor: u128 = 65536
        + ((195_766_423_245_049 * frac
            + 971_821_376 * frac * frac
            + 5127 * frac * frac * frac
            + (1u128 << 47))
            >> 48);
    let limit = params.pow_limit.0;
    let net_shift = shifts - 16;
    if net_shift >= 256 {
        return params.pow_limit;
    }
    let product = widen(parent.0) * U512::from(factor as u64);
    let shifted = if net_shift >= 0 {
        product << net_shift as usize
    } else if net_shift > -512 {
        product >> (-net_shift) as usize
    } else {
        U512::zero()
    };
    let result = if shifted > widen(limit) {
        limit
    } else {
        U256::from_big_endian(&shifted.to_big_endian()[32..])
    };
    // Never zero, and the compact form is what goes in headers.
    Target(result.max(U256::one()))
        .to_compact()
        .to_target()
        .unwrap_or(Target(U256::one()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compact_round_trips_bitcoin_genesis_bits() {
        let bits = CompactTarget(0x1d00ffff);
        let target = bits.to_target().unwrap();
        assert_eq!(target.to_compact(), bits);
        assert_eq!(target.to_hex(), format!("00000000ffff{}", "0".repeat(52)));
        assert_eq!(target.work().as_u256(), U256::from(0x0001_0001_0001u64));
    }

    #[test]
    fn bad_compacts_are_refused() {
        for bits in [0, 0x0480_0001, 0x0100_0000, 0x2300_ffff, 0xff12_3456] {
            assert!(CompactTarget(bits).to_target().is_err(), "{bits:#x}");
        }
    }

    #[test]
    fn hash_meets_target_at_or_under() {
        let target = Target::from_u256(U256::from(5u8)).unwrap();
        let mut hash = Hash256::ZERO;
        hash.0[31] = 5;
        assert!(target.is_met_by(&hash));
        hash.0[31] = 6;
        assert!(!target.is_met_by(&hash));
    }

    fn params() -> RetargetParams {
        RetargetParams {
            target_block_time_ms: 2_000,
            half_life_ms: 40_000,
            pow_limit: Target::for_expected_hashes(16),
        }
    }

    #[test]
    fn on_time_blocks_keep_the_target_and_a_half_life_late_doubles_it() {
        let p = params();
        let start = Target::for_expected_hashes(1 << 30)
            .to_compact()
            .to_target()
            .unwrap();
        assert_eq!(next_target(start, 2_000, &p), start);
        let doubled = next_target(start, 42_000, &p).as_u256();
        let expected = start.as_u256() * U256::from(2u8);
        let diff = if doubled > expected {
            doubled - expected
        } else {
            expected - doubled
        };
        assert!(
            diff < expected / U256::from(10_000u32),
            "{doubled} vs {expected}"
        );
        assert_eq!(next_target(start, i64::MAX / 2, &p), p.pow_limit);
        assert_eq!(next_target(start, i64::MIN / 2, &p).as_u256(), U256::one());
    }

    /// Expected hashes to meet `target`, as a float (for the simulation only).
    fn expected_hashes(target: Target) -> f64 {
        let t = target.as_u256();
        let shift = t.bits().saturating_sub(53);
        let top = (t >> shift).low_u64() as f64;
        2f64.powi(256) / (top * 2f64.powi(shift as i32))
    }

    /// Deterministic exponential solve times (splitmix64 uniform → -ln U).
    struct Miner(u64);
    impl Miner {
        fn solve_time_ms(&mut self, target: Target, hashes_per_ms: f64) -> i64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (-u.ln() * expected_hashes(target) / hashes_per_ms).round() as i64
        }
    }

    /// Blocks until the expected block time is back within 25 % of target, or None.
    fn blocks_to_recover(
        target: &mut Target,
        miner: &mut Miner,
        rate: f64,
        p: &RetargetParams,
    ) -> Option<usize> {
        for n in 1..=400 {
            *target = next_target(*target, miner.solve_time_ms(*target, rate), p);
            let expected = expected_hashes(*target) / rate;
            if (0.75..=1.25).contains(&(expected / p.target_block_time_ms as f64)) {
                return Some(n);
            }
        }
        None
    }

    #[test]
    fn asert_holds_block_time_and_recovers_from_tenfold_hashrate_changes() {
        let p = RetargetParams {
            target_block_time_ms: 2_000,
            half_life_ms: 40_000,
            pow_limit: Target::for_expected_hashes(16),
        };
        let rate = 10_000.0; // hashes per ms
        let mut target = Target::for_expected_hashes(20_000_000)
            .to_compact()
            .to_target()
            .unwrap();
        let mut miner = Miner(7);
        let blocks = 20_000;
        let mut total_ms = 0i64;
        for _ in 0..blocks {
            let solve = miner.solve_time_ms(target, rate);
            total_ms += solve;
            target = next_target(target, solve, &p);
        }
        let mean = total_ms as f64 / blocks as f64;
        assert!(
            (mean / 2_000.0 - 1.0).abs() < 0.05,
            "mean block time {mean} ms"
        );

        let after_drop = blocks_to_recover(&mut target, &mut miner, rate / 10.0, &p);
        assert!(
            after_drop.is_some_and(|n| n <= 100),
            "10x drop: {after_drop:?} blocks"
        );
        let after_rise = blocks_to_recover(&mut target, &mut miner, rate, &p);
        assert!(
            after_rise.is_some_and(|n| n <= 100),
            "10x rise: {after_rise:?} blocks"
        );
    }

    proptest! {
        #[test]
        fn compact_never_rounds_easier(words in proptest::array::uniform4(any::<u64>())) {
            let value = U256(words);
            prop_assume!(!value.is_zero());
            let target = Target::from_u256(value).unwrap();
            let compact = target.to_compact();
            let back = compact.to_target().unwrap();
            prop_assert!(back <= target);
            prop_assert_eq!(back.to_compact(), compact);
        }
    }
}

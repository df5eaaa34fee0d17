//! Fingerprints of world states: fast, and the same on every machine (no per-process random keys,
//! no CPU-dependent instructions), so that a run explores identically everywhere.

use std::hash::{BuildHasherDefault, Hash, Hasher};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// A multiply-rotate hasher over 8-byte words with a murmur3 finalizer. It starts from a non-zero
/// seed so that zero words still stir the state (from 0, any run of zero words would hash to 0).
pub struct StateHasher {
    h: u64,
}

impl Default for StateHasher {
    fn default() -> Self {
        StateHasher { h: 0x243F_6A88_85A3_08D3 }
    }
}

impl StateHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.h = (self.h ^ word).wrapping_mul(K).rotate_left(29);
    }
}

impl Hasher for StateHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            // The length in the last byte, which a rest of under 8 bytes never reaches.
            buf[7] = rest.len() as u8;
            self.mix(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.mix(i as u64);
    }
    fn finish(&self) -> u64 {
        let mut x = self.h;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

pub fn fingerprint<T: Hash>(t: &T) -> u64 {
    let mut h = StateHasher::default();
    t.hash(&mut h);
    h.finish()
}

/// For maps keyed by a fingerprint, which is already well mixed.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn write(&mut self, _: &[u8]) {
        unreachable!("a FingerprintMap is keyed by u64 fingerprints, which hash through write_u64");
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FingerprintMap<V> = std::collections::HashMap<u64, V, BuildHasherDefault<Identity>>;

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_TUPLE: u64 = 1705385088496362636;
    const PINNED_ZERO: u64 = 10852644790149860515;
    const PINNED_WIDTHS: u64 = 9123029979491385475;

    #[test]
    fn fingerprints_are_pinned_so_every_machine_dedups_the_same_states() {
        // Pinned values: if these move, state deduplication may differ between builds.
        assert_eq!(fingerprint(&(1u8, vec![2u64, 3], "abc")), PINNED_TUPLE);
        assert_eq!(fingerprint(&0u64), PINNED_ZERO);
    }

    #[test]
    fn every_integer_width_is_part_of_the_fingerprint() {
        // Pinned like the above, over the widths those leave out (u16, u32, i64; u8 and usize too).
        assert_eq!(fingerprint(&(1u16, 2u32, -3i64, 4u8, 5usize)), PINNED_WIDTHS);
        for other in
            [(0u16, 2u32, -3i64, 4u8, 5usize), (1, 0, -3, 4, 5), (1, 2, 0, 4, 5), (1, 2, -3, 0, 5), (1, 2, -3, 4, 0)]
        {
            assert_ne!(fingerprint(&other), PINNED_WIDTHS, "{other:?}");
        }
    }

    #[test]
    fn a_fingerprint_map_keys_by_the_fingerprint_itself() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<Identity>::default();
        for key in [0u64, 1, PINNED_TUPLE, u64::MAX] {
            assert_eq!(build.hash_one(key), key);
        }
    }

    #[test]
    #[should_panic(expected = "keyed by u64 fingerprints")]
    fn a_fingerprint_map_refuses_keys_that_are_not_fingerprints() {
        use std::hash::BuildHasher;
        BuildHasherDefault::<Identity>::default().hash_one("not a fingerprint");
    }

    #[test]
    fn order_and_runs_of_zeros_change_the_fingerprint() {
        assert_ne!(fingerprint(&vec![1u8, 2]), fingerprint(&vec![2u8, 1]));
        assert_ne!(fingerprint(&(0u64, 1u64)), fingerprint(&(1u64, 0u64)));
        assert_ne!(fingerprint(&0u64), fingerprint(&(0u64, 0u64)));
        assert_ne!(fingerprint(&0u64), 0);
    }
}

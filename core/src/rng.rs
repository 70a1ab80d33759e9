//! A small seeded generator. The core never reads OS randomness: the driver passes a seed in,
//! so that the simulator can replay a run exactly.

/// SplitMix64: tiny, fast, and good enough for ids; not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random version-4 UUID, used for topic ids and the cluster id.
    pub fn uuid(&mut self) -> uuid::Uuid {
        let high = u128::from(self.next_u64());
        let low = u128::from(self.next_u64());
        let bits = (high << 64) | low;
        // Set version 4 and the RFC 4122 variant so the id looks like any other.
        let bits = (bits & !(0xF << 76)) | (0x4 << 76);
        let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
        uuid::Uuid::from_u128(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn uuids_are_v4() {
        let mut rng = Rng::new(3);
        let id = rng.uuid();
        assert_eq!(id.get_version_num(), 4);
        assert!(!id.is_nil());
    }
}

//! The one seeded generator of the library: SplitMix64 (Steele, Lea, Flood 2014), a
//! fixed and portable sequence, so random weights (`rsp bench`, the model zoo,
//! cascading randomisation), SmoothGrad's noise, the synthetic benchmark's images and
//! the autotuner's trial operands are the same on every machine and in every run.
//! (The faithfulness metrics' noise keeps a generator of its own, whose sequence the
//! published evaluation tables depend on.)

/// SplitMix64's output function: a bijective mix of 64 bits (also used to derive
/// seeds).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 from a seed (the state).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in (0, 1) from the top 24 bits, centred in its bin (never 0, so its
    /// logarithm is finite).
    pub fn unit_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    /// Uniform in [0, 1) from the top 53 bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal value (Box–Muller on two [`SplitMix64::unit_f32`]).
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit_f32(), self.unit_f32());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    /// `n` normal values times `scale`.
    pub fn fill(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence is part of the published figures (random weights, the synthetic
    /// benchmark): it must not change. First outputs of seed 0 (SplitMix64's reference
    /// values).
    #[test]
    fn the_sequence_is_splitmix64s() {
        let mut r = SplitMix64(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let u = SplitMix64(7).unit_f32();
        assert!(u > 0.0 && u < 1.0);
    }
}

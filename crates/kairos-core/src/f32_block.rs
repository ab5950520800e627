//! Serde for `Vec<f32>` stored in binary formats: a `#[serde(with = ...)]`
//! module that writes the numbers as one block of bytes (4 a number, little
//! endian) in binary formats (postcard), and as a sequence of numbers, as
//! serde does by default, in human-readable ones (JSON).
//!
//! A profile holds hundreds of these numbers and is read for every
//! decision: one block is copied out at once, where a sequence is read one
//! number at a time. Exact: every `f32`, NaN payloads included, round-trips.

use serde::de::Visitor;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.collect_seq(v)
    } else {
        let mut bytes = Vec::with_capacity(v.len() * 4);
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        s.serialize_bytes(&bytes)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    if d.is_human_readable() {
        return Vec::<f32>::deserialize(d);
    }
    struct Block;
    impl<'de> Visitor<'de> for Block {
        type Value = Vec<f32>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a block of 4-byte numbers")
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<f32>, E> {
            if bytes.len() % 4 != 0 {
                return Err(E::custom(format!(
                    "a block of 4-byte numbers has {} bytes",
                    bytes.len()
                )));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
    }
    d.deserialize_bytes(Block)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "super")]
        a: Vec<f32>,
        #[serde(with = "super")]
        empty: Vec<f32>,
        after: u32,
    }

    fn sample() -> Sample {
        Sample {
            a: vec![0.0, -0.0, 1.5, f32::MIN_POSITIVE, f32::MAX, 1e-42, 0.1],
            empty: vec![],
            after: 7,
        }
    }

    #[test]
    fn binary_is_one_block_and_round_trips_exactly() {
        let s = sample();
        let bytes = postcard::to_stdvec(&s).unwrap_or_default();
        // A length, 28 bytes, a length, the u32.
        assert_eq!(bytes.len(), 1 + 28 + 1 + 1);
        let back: Sample = postcard::from_bytes(&bytes).unwrap_or(Sample {
            a: vec![],
            empty: vec![1.0],
            after: 0,
        });
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.a), bits(&s.a));
        assert_eq!(back, s);
    }

    #[test]
    fn json_is_a_sequence_of_numbers() {
        let s = sample();
        let json = serde_json::to_value(&s).unwrap_or_default();
        assert_eq!(json["a"], serde_json::json!(s.a));
        assert_eq!(json["empty"], serde_json::json!([]));
        assert_eq!(serde_json::from_value::<Sample>(json).ok(), Some(s));
    }

    #[test]
    fn a_block_that_is_not_whole_numbers_is_an_error() {
        // A 5-byte block, then the rest.
        let bytes = [5u8, 0, 0, 128, 63, 0, 0, 7];
        assert!(postcard::from_bytes::<Sample>(&bytes).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_numbers_round_trip_bit_for_bit(bits in proptest::collection::vec(proptest::num::u32::ANY, 0..300)) {
            let s = Sample { a: bits.iter().map(|b| f32::from_bits(*b)).collect(), empty: vec![], after: 1 };
            let bytes = postcard::to_stdvec(&s).unwrap_or_default();
            let back: Sample = postcard::from_bytes(&bytes).unwrap_or(Sample { a: vec![], empty: vec![], after: 0 });
            proptest::prop_assert_eq!(back.a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), bits);
        }
    }
}

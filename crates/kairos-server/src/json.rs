//! Compact JSON for the NDJSON lines of batch answers: exactly the bytes
//! `serde_json::to_writer` writes, with each string copied whole when
//! nothing in it needs escaping. serde_json looks every byte of every
//! string up in its escape table and branches on it; a campaign answer is
//! about 1,150 bytes, most of them explanations in plain text, and a
//! million of them go out per campaign. Here a string is first checked
//! eight bytes at a time, in a machine word, and only a string with a
//! quote, a backslash or a control character is escaped byte by byte, as
//! serde_json escapes it.
//!
//! Anything this writer does not take (a map key that is not a string, a
//! number or a unit variant) is an error, and [`write`] falls back to
//! serde_json for the whole value. Floats go through serde_json's own
//! formatter crate (`zmij`); the tests compare this writer's bytes with
//! serde_json's, so a serde_json whose output changes fails them.

use std::fmt::Display;
use std::io::Write as _;

use serde::ser::{self, Serialize};

/// Appends `value` as compact JSON to `out`, as `serde_json::to_writer`
/// would.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let start = out.len();
    if value.serialize(&mut Json { out }).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    serde_json::to_writer(out, value)
}

#[derive(Debug)]
pub struct Unsupported(String);

impl Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: Display>(msg: T) -> Self {
        Unsupported(msg.to_string())
    }
}

type Result<T = ()> = std::result::Result<T, Unsupported>;

struct Json<'a> {
    out: &'a mut Vec<u8>,
}

/// Whether a byte must be escaped in a JSON string (serde_json escapes
/// exactly these: the control characters, the quote and the backslash).
#[inline]
fn escaped(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte must be escaped, eight bytes at a time in a word: a
/// byte below 0x20 leaves a borrow in its top bit when 0x20 is taken from
/// every byte (`(x - 0x20…20) & !x & 0x80…80`, exact for whether there is
/// one), and a quote or backslash becomes a zero byte when XORed with eight
/// of them (the same test with 0x01…01).
fn any_escaped(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let any_in = |word: &[u8]| {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            return true;
        };
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        below(x, 0x20) | below(quote, 1) | below(backslash, 1) != 0
    };
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| escaped(b));
    }
    // The words, and the last eight bytes as one more (overlapping the
    // last word where the length is not a multiple of eight).
    bytes.chunks_exact(8).any(any_in) || any_in(&bytes[bytes.len() - 8..])
}

/// `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if any_escaped(bytes) {
        out.push(b'"');
        escape(out, bytes);
        out.push(b'"');
    } else {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    }
}

/// The bytes of a string with escapes, as serde_json writes them: the
/// short forms where JSON has one, `\u00XX` in lowercase hex otherwise.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !escaped(b) {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

fn display(out: &mut Vec<u8>, v: impl Display) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{v}");
}

fn f64_value(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn f32_value(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// An object, array or variant being written: whether a comma comes
/// before the next element, and whether a variant's wrapping object is
/// still to be closed.
struct Compound<'b, 'a> {
    json: &'b mut Json<'a>,
    first: bool,
    close_variant: bool,
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.json.out.push(b',');
        }
    }

    fn close(self, bracket: u8) {
        self.json.out.push(bracket);
        if self.close_variant {
            self.json.out.push(b'}');
        }
    }
}

impl<'b, 'a> Json<'a> {
    fn open(&'b mut self, bracket: u8, variant: Option<&str>) -> Compound<'b, 'a> {
        if let Some(v) = variant {
            self.out.push(b'{');
            string(self.out, v);
            self.out.push(b':');
        }
        self.out.push(bracket);
        Compound {
            json: self,
            first: true,
            close_variant: variant.is_some(),
        }
    }
}

/// The integer methods of a serializer, each writing its number by
/// `$how` (the number as it is, or in quotes as a map key).
macro_rules! integers_by {
    ($how:ident) => {
        integers_by!($how: serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
            serialize_i64(i64), serialize_i128(i128), serialize_u8(u8), serialize_u16(u16),
            serialize_u32(u32), serialize_u64(u64), serialize_u128(u128));
    };
    ($how:ident: $($method:ident($t:ty)),*) => {$(
        fn $method(self, v: $t) -> Result {
            self.$how(v)
        }
    )*};
}

impl Json<'_> {
    fn number(&mut self, v: impl Display) -> Result {
        display(self.out, v);
        Ok(())
    }
}

impl<'b, 'a> ser::Serializer for &'b mut Json<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Compound<'b, 'a>;
    type SerializeTuple = Compound<'b, 'a>;
    type SerializeTupleStruct = Compound<'b, 'a>;
    type SerializeTupleVariant = Compound<'b, 'a>;
    type SerializeMap = Compound<'b, 'a>;
    type SerializeStruct = Compound<'b, 'a>;
    type SerializeStructVariant = Compound<'b, 'a>;

    integers_by!(number);
    fn serialize_bool(self, v: bool) -> Result {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result {
        f32_value(self.out, v);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result {
        f64_value(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result {
        string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result {
        string(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result {
        let mut seq = self.open(b'[', None);
        for b in v {
            seq.comma();
            display(seq.json.out, b);
        }
        seq.close(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _name: &'static str, _i: u32, variant: &'static str) -> Result {
        string(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        self.out.push(b'{');
        string(self.out, variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        Ok(self.open(b'[', None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        Ok(self.open(b'[', None))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        Ok(self.open(b'[', None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Ok(self.open(b'[', Some(variant)))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Ok(self.open(b'{', None))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Ok(self.open(b'{', None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Ok(self.open(b'{', Some(variant)))
    }
}

impl Compound<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.comma();
        value.serialize(&mut *self.json)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result {
        self.comma();
        string(self.json.out, key);
        self.json.out.push(b':');
        value.serialize(&mut *self.json)
    }
}

/// The four kinds of array: elements, then `]`.
macro_rules! array {
    ($($kind:ident :: $method:ident),*) => {$(
        impl ser::$kind for Compound<'_, '_> {
            type Ok = ();
            type Error = Unsupported;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
                self.element(value)
            }
            fn end(self) -> Result {
                self.close(b']');
                Ok(())
            }
        }
    )*};
}

array!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        self.comma();
        key.serialize(MapKey {
            out: &mut *self.json.out,
        })?;
        self.json.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut *self.json)
    }
    fn end(self) -> Result {
        self.close(b'}');
        Ok(())
    }
}

/// The two kinds of object with named fields: fields, then `}`.
macro_rules! object {
    ($($kind:ident),*) => {$(
        impl ser::$kind for Compound<'_, '_> {
            type Ok = ();
            type Error = Unsupported;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result {
                self.field(key, value)
            }
            fn end(self) -> Result {
                self.close(b'}');
                Ok(())
            }
        }
    )*};
}

object!(SerializeStruct, SerializeStructVariant);

/// A map key: a string, a number in quotes or a unit variant's name;
/// anything else is [`Unsupported`] (and [`write`] hands the value to
/// serde_json, which decides).
struct MapKey<'a> {
    out: &'a mut Vec<u8>,
}

impl MapKey<'_> {
    fn quoted(self, v: impl Display) -> Result {
        self.out.push(b'"');
        display(self.out, v);
        self.out.push(b'"');
        Ok(())
    }
}

fn unsupported<T>() -> Result<T> {
    Err(Unsupported(
        "a map key that is not a string or a number".into(),
    ))
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = ser::Impossible<(), Unsupported>;
    type SerializeTuple = ser::Impossible<(), Unsupported>;
    type SerializeTupleStruct = ser::Impossible<(), Unsupported>;
    type SerializeTupleVariant = ser::Impossible<(), Unsupported>;
    type SerializeMap = ser::Impossible<(), Unsupported>;
    type SerializeStruct = ser::Impossible<(), Unsupported>;
    type SerializeStructVariant = ser::Impossible<(), Unsupported>;

    fn serialize_str(self, v: &str) -> Result {
        string(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result {
        string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_unit_variant(self, _name: &'static str, _i: u32, variant: &'static str) -> Result {
        string(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }
    integers_by!(quoted);
    fn serialize_bool(self, _v: bool) -> Result {
        unsupported()
    }
    fn serialize_f32(self, _v: f32) -> Result {
        unsupported()
    }
    fn serialize_f64(self, _v: f64) -> Result {
        unsupported()
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result {
        unsupported()
    }
    fn serialize_none(self) -> Result {
        unsupported()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result {
        unsupported()
    }
    fn serialize_unit(self) -> Result {
        unsupported()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        unsupported()
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result {
        unsupported()
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq> {
        unsupported()
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple> {
        unsupported()
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        unsupported()
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        unsupported()
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        unsupported()
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        unsupported()
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        unsupported()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    fn same<T: Serialize + ?Sized>(value: &T) -> (String, String) {
        let mut ours = b"[prefix]".to_vec();
        super::write(value, &mut ours).unwrap_or_else(|e| panic!("{e}"));
        let theirs = serde_json::to_string(value).unwrap_or_else(|e| panic!("{e}"));
        (
            String::from_utf8(ours[8..].to_vec()).unwrap_or_default(),
            theirs,
        )
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(f64),
        Tuple(i8, String),
        Struct { a: Option<u32>, b: Vec<bool> },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Wrapper(u64);

    #[derive(Serialize)]
    struct Pair(i64, f32);

    #[derive(Serialize)]
    struct Everything {
        text: String,
        escapes: &'static str,
        unicode: &'static str,
        letter: char,
        quote: char,
        small: i8,
        big: i128,
        huge: u128,
        fraction: f64,
        tiny: f64,
        not_a_number: f64,
        infinite: f32,
        single: f32,
        yes: bool,
        nothing: Option<String>,
        something: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        #[serde(with = "serde_bytes_as_slice")]
        bytes: Vec<u8>,
        unit: (),
        unit_struct: Unit,
        wrapper: Wrapper,
        pair: Pair,
        tuple: (u8, &'static str),
        shapes: Vec<Shape>,
        by_number: BTreeMap<u32, &'static str>,
        by_name: BTreeMap<String, Vec<f64>>,
        empty_list: Vec<u8>,
        empty_map: BTreeMap<String, u8>,
        value: serde_json::Value,
    }

    mod serde_bytes_as_slice {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    #[test]
    fn every_shape_is_written_as_serde_json_writes_it() {
        let value = Everything {
            text: "Usually active Mondays 19:00-21:00 (Asia/Kuala_Lumpur)".into(),
            escapes: "a \"quote\", a \\ backslash, \n\r\t\u{8}\u{c} and \u{1}\u{1f}\u{7f}",
            unicode: "Zürich, 東京, 🙂",
            letter: 'é',
            quote: '"',
            small: -128,
            big: i128::MIN,
            huge: u128::MAX,
            fraction: 0.151_534_442_639_504_77,
            tiny: 5e-324,
            not_a_number: f64::NAN,
            infinite: f32::NEG_INFINITY,
            single: 0.1,
            yes: true,
            nothing: None,
            something: Some("x"),
            skipped: None,
            bytes: vec![0, 7, 255],
            unit: (),
            unit_struct: Unit,
            wrapper: Wrapper(u64::MAX),
            pair: Pair(-1, 1e30),
            tuple: (1, "two"),
            shapes: vec![
                Shape::Unit,
                Shape::Newtype(-0.0),
                Shape::Tuple(3, "t".into()),
                Shape::Struct {
                    a: Some(4),
                    b: vec![true, false],
                },
                Shape::Struct { a: None, b: vec![] },
            ],
            by_number: [(1, "one"), (20, "twenty")].into_iter().collect(),
            by_name: [("a\"b".to_string(), vec![1.5, 1e-7])]
                .into_iter()
                .collect(),
            empty_list: vec![],
            empty_map: BTreeMap::new(),
            value: serde_json::json!({"k": [null, 1, -2, 3.25, "s", {"n": {}}]}),
        };
        let (ours, theirs) = same(&value);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_word_test_finds_every_byte_to_escape() {
        // Every byte value at every place of buffers up to three words and
        // a half long, among bytes that need no escape (and 0x7f, 0x80,
        // 0xff, the neighbours of the borrows).
        for len in 1..=28 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes: Vec<u8> = (0..len)
                        .map(|i| [b'a', 0x7f, 0x80, 0xff, b' '][i % 5])
                        .collect();
                    bytes[at] = b;
                    assert_eq!(
                        super::any_escaped(&bytes),
                        super::escaped(b),
                        "{b:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(!super::any_escaped(b""));
    }

    #[test]
    fn what_it_does_not_write_goes_to_serde_json() {
        // A map keyed by booleans: serde_json decides (and writes it).
        let by_bool: BTreeMap<bool, u8> = [(true, 1)].into_iter().collect();
        let mut ours = Vec::new();
        let theirs = serde_json::to_vec(&by_bool);
        assert_eq!(
            super::write(&by_bool, &mut ours).ok(),
            theirs.as_ref().ok().map(|_| ())
        );
        if let Ok(theirs) = theirs {
            assert_eq!(ours, theirs);
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
            "[\\x00-\\x7f]{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[\\x00-\\x7f]{0,12}|\\PC{0,6}", inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_value_is_written_as_serde_json_writes_it(value in json_value()) {
            let (ours, theirs) = same(&value);
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(s in any::<String>(), ascii in "[\\x00-\\x7f]{0,64}") {
            let (ours, theirs) = same(&s);
            prop_assert_eq!(ours, theirs);
            let (ours, theirs) = same(&ascii);
            prop_assert_eq!(ours, theirs);
        }
    }
}

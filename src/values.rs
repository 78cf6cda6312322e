//! Self-validating values of the boundary: each type is the one rule for its
//! value, whatever form the user gave it in (a number or its text, `"all"`,
//! `512m`, a tuple or one limit). Deserializing is validating, so a value the
//! core holds is a value the core may use. Pure.
//!
//! Messages name what was expected and what was given, never the keyword:
//! the reader of a whole configuration prefixes its path (`mem_limit: ...`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A number as the user gave it: an integer or a float, never a bool.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => i.fmt(f),
            Number::Float(x) => x.fmt(f),
        }
    }
}

/// A number, or (with `text`) a string: what the user gave.
#[derive(Debug, Clone, PartialEq)]
enum Given {
    Number(Number),
    Text(String),
}

/// Reads a number or a string; anything else is an error saying `expecting`.
struct GivenVisitor(&'static str);

impl Visitor<'_> for GivenVisitor {
    type Value = Given;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(expected(self.0))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Given, E> {
        Ok(Given::Number(Number::Int(v.into())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Given, E> {
        Ok(Given::Number(Number::Int(v.into())))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Given, E> {
        Ok(Given::Number(Number::Int(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Given, E> {
        Ok(Given::Number(Number::Float(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Given, E> {
        Ok(Given::Text(v.to_owned()))
    }
}

/// A rule (`must be a count`) as what serde expected (`a count`): serde says
/// "invalid type: boolean `true`, expected a count".
fn expected(rule: &str) -> &str {
    rule.strip_prefix("must be ").unwrap_or(rule)
}

fn given<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<Given, D::Error> {
    d.deserialize_any(GivenVisitor(expecting))
}

/// A number only: text is refused with `expecting`.
fn number<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<Number, D::Error> {
    match given(d, expecting)? {
        Given::Number(n) => Ok(n),
        Given::Text(t) => Err(de::Error::custom(format!("{expecting}, got {t:?}"))),
    }
}

/// An integer only.
fn integer<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<i64, D::Error> {
    match number(d, expecting)? {
        Number::Int(i) => {
            i64::try_from(i).map_err(|_| de::Error::custom(format!("{expecting}, got {i}")))
        }
        Number::Float(x) => Err(de::Error::custom(format!("{expecting}, got {x}"))),
    }
}

/// A positive, finite number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Seconds(f64);

impl Seconds {
    /// Check a number of seconds.
    pub fn new(value: f64) -> Result<Seconds, String> {
        // `!(x > 0)` also refuses NaN.
        if value.is_finite() && value > 0.0 {
            Ok(Seconds(value))
        } else {
            Err(format!("must be a positive number of seconds, got {value}"))
        }
    }

    /// The seconds as given.
    pub fn get(self) -> f64 {
        self.0
    }

    /// As a duration (one too long for a `Duration` is the longest there is).
    pub fn duration(self) -> Duration {
        Duration::try_from_secs_f64(self.0).unwrap_or(Duration::MAX)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = number(d, "must be a positive number of seconds")?;
        Seconds::new(n.as_f64()).map_err(de::Error::custom)
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

/// CPUs, held as Docker's billionths of a CPU. Read from a number of CPUs and
/// rounded like `docker run --cpus` (2.01 is 2_010_000_000, not one less).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NanoCpus(pub i64);

impl<'de> Deserialize<'de> for NanoCpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "must be a positive, finite number of CPUs";
        let cpus = number(d, WANT)?.as_f64();
        let nano = (cpus * 1e9).round();
        if !cpus.is_finite() || nano < 1.0 || nano > i64::MAX as f64 {
            return Err(de::Error::custom(format!("{WANT}, got {cpus}")));
        }
        Ok(NanoCpus(nano as i64))
    }
}

impl Serialize for NanoCpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 1e9)
    }
}

/// A size in bytes: a positive count of bytes, or docker-py's text
/// (`512m`, `2g`; suffixes `b`, `k`, `m`, `g`, powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Bytes(pub i64);

impl Bytes {
    /// Read docker-py's size text.
    pub fn parse(text: &str) -> Result<Bytes, String> {
        let bad = || format!("{text:?} is not a size like 512m or 2g");
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let multiplier: i64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" => 1 << 10,
            "m" => 1 << 20,
            "g" => 1 << 30,
            _ => return Err(bad()),
        };
        let count: i64 = digits.parse().map_err(|_| bad())?;
        Bytes::new(count.checked_mul(multiplier).ok_or_else(bad)?.into())
    }

    fn new(value: i128) -> Result<Bytes, String> {
        match i64::try_from(value) {
            Ok(v) if v > 0 => Ok(Bytes(v)),
            _ => Err(format!("must be positive, got {value}")),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "must be bytes or a size like 512m";
        match given(d, WANT)? {
            Given::Number(Number::Int(i)) => Bytes::new(i),
            Given::Number(Number::Float(x)) => Err(format!("{WANT}, got {x}")),
            Given::Text(t) => Bytes::parse(&t),
        }
        .map_err(de::Error::custom)
    }
}

/// GPUs to request: a positive count, or every GPU (`"all"`, Docker's -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gpus(pub i64);

impl<'de> Deserialize<'de> for Gpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "must be a positive count or 'all'";
        match given(d, WANT)? {
            Given::Text(t) if t == "all" => Ok(Gpus(-1)),
            Given::Number(Number::Int(i)) if i > 0 && i <= i64::MAX.into() => Ok(Gpus(i as i64)),
            Given::Number(n) => Err(de::Error::custom(format!("{WANT}, got {n}"))),
            Given::Text(t) => Err(de::Error::custom(format!("{WANT}, got {t:?}"))),
        }
    }
}

impl Serialize for Gpus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 < 0 {
            s.serialize_str("all")
        } else {
            s.serialize_i64(self.0)
        }
    }
}

/// A positive count (of processes, of containers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Count(pub i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "must be a positive count";
        match integer(d, WANT)? {
            n if n >= 1 => Ok(Count(n)),
            n => Err(de::Error::custom(format!("{WANT}, got {n}"))),
        }
    }
}

/// A count that may be zero (of containers kept parked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Quantity(pub usize);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "must be a count (0 or more)";
        let n = integer(d, WANT)?;
        usize::try_from(n)
            .map(Quantity)
            .map_err(|_| de::Error::custom(format!("{WANT}, got {n}")))
    }
}

/// The kernel's OOM-kill preference: -1000 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OomScoreAdj(pub i64);

impl<'de> Deserialize<'de> for OomScoreAdj {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "must be an integer in -1000..1000";
        match integer(d, WANT)? {
            n if (-1000..=1000).contains(&n) => Ok(OomScoreAdj(n)),
            n => Err(de::Error::custom(format!("{WANT}, got {n}"))),
        }
    }
}

/// A resource limit: one limit for soft and hard alike, or `(soft, hard)`
/// with `0 <= soft <= hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const WANT: &str = "must be a limit or (soft, hard), 0 <= soft <= hard";
        fn check<E: de::Error>(soft: i64, hard: i64) -> Result<Ulimit, E> {
            if 0 <= soft && soft <= hard {
                Ok(Ulimit { soft, hard })
            } else {
                Err(E::custom(format!("{WANT}, got ({soft}, {hard})")))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(expected(WANT))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
                check(v, v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                let v = i64::try_from(v).map_err(|_| E::custom(format!("{WANT}, got {v}")))?;
                check(v, v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ulimit, A::Error> {
                let pair = (seq.next_element::<i64>()?, seq.next_element::<i64>()?);
                match (pair, seq.next_element::<de::IgnoredAny>()?) {
                    ((Some(soft), Some(hard)), None) => check(soft, hard),
                    _ => Err(de::Error::custom(WANT)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Ulimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.soft, self.hard).serialize(s)
    }
}

/// A bool, and nothing Python would take for one (`1`, `"yes"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("True or False")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Text that says something: not empty, not blank.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Word(pub String);

impl Word {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const WANT: &str = "must be a non-empty string";
        match given(d, WANT)? {
            Given::Text(t) if !t.trim().is_empty() => Ok(Word(t)),
            Given::Text(t) => Err(de::Error::custom(format!("{WANT}, got {t:?}"))),
            Given::Number(n) => Err(de::Error::custom(format!("{WANT}, got {n}"))),
        }
    }
}

/// A list of non-empty strings. A string alone is refused: it is a sequence
/// of characters to Python, never the list the user meant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Words(pub Vec<String>);

impl Words {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const WANT: &str = "must be a list of non-empty strings";
        impl<'de> Visitor<'de> for V {
            type Value = Words;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(expected(WANT))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Words, E> {
                Err(E::custom(format!("{WANT}, not one string: {v:?}")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Words, A::Error> {
                let mut out = Vec::new();
                while let Some(word) = seq.next_element::<Word>()? {
                    out.push(word.0);
                }
                Ok(Words(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// An absolute path in the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AbsolutePath(pub String);

impl<'de> Deserialize<'de> for AbsolutePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = String::deserialize(d)?;
        if path.starts_with('/') {
            Ok(AbsolutePath(path))
        } else {
            Err(de::Error::custom(format!(
                "paths must be absolute, got {path:?}"
            )))
        }
    }
}

/// A container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, the Engine's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ContainerName(pub String);

impl ContainerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for ContainerName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if valid {
            Ok(ContainerName(name))
        } else {
            Err(de::Error::custom(format!(
                "{name:?} is not a valid container name: name_prefix must start \
                 with a letter or digit and hold only letters, digits, '_', '.' and '-'"
            )))
        }
    }
}

/// A log driver and its options, given as docker-py's
/// `{"type": driver, "config": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(rename = "type")]
    pub driver: Word,
    #[serde(default, deserialize_with = "null_is_empty")]
    pub config: BTreeMap<String, String>,
}

/// `None` for a map is the empty map.
fn null_is_empty<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// Bind mounts and volumes as `src:dst[:mode]`, given as such a list or as
/// docker-py's `{src: {"bind": dst, "mode": mode}}` (mode `rw` by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Binds(pub Vec<String>);

impl<'de> Deserialize<'de> for Binds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const WANT: &str = "must be a list of 'src:dst[:mode]' strings or a mapping";
        #[derive(Deserialize)]
        struct Target {
            bind: Option<String>,
            mode: Option<String>,
        }
        impl<'de> Visitor<'de> for V {
            type Value = Binds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(expected(WANT))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Binds, E> {
                Ok(Binds::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Binds, E> {
                Ok(Binds::default())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Binds, E> {
                Err(E::custom(format!("{WANT}, not one string: {v:?}")))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Binds, A::Error> {
                let mut out = Vec::new();
                while let Some(bind) = seq.next_element::<String>()? {
                    out.push(bind);
                }
                Ok(Binds(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Binds, A::Error> {
                let mut out = Vec::new();
                while let Some((source, target)) = map.next_entry::<String, Target>()? {
                    let Some(bind) = target.bind else {
                        return Err(de::Error::custom(format!(
                            "volume {source:?} needs a 'bind' destination"
                        )));
                    };
                    let mode = target.mode.unwrap_or_else(|| "rw".to_owned());
                    out.push(format!("{source}:{bind}:{mode}"));
                }
                Ok(Binds(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// When a worker's image is pulled from its registry before the worker starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    /// When the Engine does not have it (the docker CLI's `--pull missing`).
    #[default]
    Missing,
    /// Before every start (once per process while a pull is under way), so a
    /// moved tag is followed.
    Always,
    /// Never: a missing image is an error, and no registry is asked.
    Never,
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;

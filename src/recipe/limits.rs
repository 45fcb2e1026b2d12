//! Resource limits as config files write them: `cpus` (cores, may be fractional) and
//! `memory` (bytes, or a number with a `k`/`m`/`g` unit, either case, an optional `b`).
//! Shared by a recipe's `[build]` and a stack service (`stack.toml`), so both accept and
//! refuse the same values with the same words. The limits go to Docker as `NanoCpus` and
//! `Memory` (containers) or `Resources.Limits` (Swarm tasks).

/// Smallest memory limit: Docker refuses a container below 6 MiB ("Minimum memory limit
/// allowed is 6MB").
pub(crate) const MIN_MEMORY: u64 = 6 << 20;
/// Smallest CPU limit: Docker's `--cpus` granularity (its error: "Range of CPUs is from 0.01
/// to N").
pub(crate) const MIN_CPUS: f64 = 0.01;
/// Largest CPU limit accepted in a file (a larger one is surely a typo).
pub(crate) const MAX_CPUS: f64 = 1024.0;

pub(crate) const CPUS_HELP: &str =
    "`cpus` must be a number of cores from 0.01 to 1024, e.g. `cpus = 2` or `0.5`";
const MEMORY_HELP: &str =
    "write memory as bytes or with a unit, e.g. `memory = \"2g\"`, `\"512m\"` or `\"256M\"`";

/// `c` if it is a CPU limit Docker takes, otherwise the message saying what to write.
pub(crate) fn cpus(c: f64) -> Result<f64, &'static str> {
    if c.is_finite() && (MIN_CPUS..=MAX_CPUS).contains(&c) {
        Ok(c)
    } else {
        Err(CPUS_HELP)
    }
}

/// The number of bytes `v` (an integer, or a string with an optional unit) means, at least
/// [`MIN_MEMORY`]; otherwise the message saying what to write.
pub(crate) fn memory(v: &toml::Value) -> Result<u64, String> {
    let bytes = match v {
        toml::Value::Integer(i) if *i > 0 => *i as u64,
        toml::Value::String(s) => parse_memory(s).ok_or_else(|| MEMORY_HELP.to_string())?,
        _ => return Err(MEMORY_HELP.into()),
    };
    if bytes < MIN_MEMORY {
        return Err("`memory` must be at least 6m (Docker's minimum)".into());
    }
    // The engine takes a signed 64-bit byte count.
    if i64::try_from(bytes).is_err() {
        return Err(format!(
            "`memory` of {bytes} bytes is more than any engine takes; {MEMORY_HELP}"
        ));
    }
    Ok(bytes)
}

fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    match num.trim().parse::<u64>() {
        Ok(n) if n > 0 => n.checked_mul(mult),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> toml::Value {
        toml::Value::String(v.into())
    }

    #[test]
    fn memory_with_and_without_units() {
        assert_eq!(memory(&s("256M")), Ok(256 << 20));
        assert_eq!(memory(&s("256m")), Ok(256 << 20));
        assert_eq!(memory(&s("2g")), Ok(2 << 30));
        assert_eq!(memory(&s("2GB")), Ok(2 << 30));
        assert_eq!(memory(&s("8192k")), Ok(8 << 20));
        assert_eq!(memory(&toml::Value::Integer(7 << 20)), Ok(7 << 20));
        assert_eq!(memory(&s(" 7340032 ")), Ok(7 << 20));
    }

    #[test]
    fn memory_past_a_signed_64_bit_count_is_refused() {
        let e = memory(&s("8589934592g")).unwrap_err();
        assert!(e.contains("more than any engine takes"), "{e}");
        assert_eq!(memory(&s("8589934591g")), Ok(8589934591 << 30));
    }

    #[test]
    fn bad_memory_says_what_to_write() {
        for bad in [
            "",
            "m",
            "-1m",
            "1.5g",
            "12t",
            "lots",
            "99999999999999999999g",
        ] {
            let e = memory(&s(bad)).unwrap_err();
            assert!(e.contains("with a unit"), "{bad}: {e}");
        }
        assert!(memory(&toml::Value::Float(1.0)).is_err());
        assert!(memory(&toml::Value::Integer(0)).is_err());
        let small = memory(&s("5m")).unwrap_err();
        assert!(small.contains("at least 6m"), "{small}");
    }

    #[test]
    fn cpus_range() {
        assert_eq!(cpus(0.5), Ok(0.5));
        assert_eq!(cpus(2.0), Ok(2.0));
        for bad in [0.0, 0.001, -1.0, f64::NAN, f64::INFINITY, 2000.0] {
            assert_eq!(cpus(bad), Err(CPUS_HELP), "{bad}");
        }
    }
}

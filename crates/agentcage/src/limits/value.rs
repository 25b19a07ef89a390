//! Units: parsing and formatting of the values resource limits are written in.
//!
//! The `--memory`, `--fsize`, `--pids`, `--nofile`, `--cpus` and `--timeout` flags (and the same
//! keys in a policy file) take human-friendly strings. This module turns them into the plain
//! numbers a [`LimitsSpec`] holds, and back, with one grammar per kind of value:
//!
//! - **sizes**: a decimal number with an optional binary unit, case-insensitive: `4096`,
//!   `100k`, `512M`, `1.5G`, `2T`, `1P` (`KB`/`KiB`, `MB`/`MiB`, ... are accepted as aliases:
//!   every unit is a power of 1024, as in cgroups, Docker and systemd). A trailing `b`/`B` means
//!   bytes. `max`, `unlimited`, `infinity` mean no limit where a limit may be lifted.
//! - **durations**: a decimal number with an optional unit `ms`, `s`, `m`, `h`, `d`; a bare
//!   number is seconds (like timeout(1)). At most nine decimal places, at most `u32::MAX` s.
//! - **CPU fractions**: a positive decimal number of CPUs (`0.5`, `2`, `1.25`), at least 0.01.
//! - **counts**: a positive integer, or `max`/`unlimited`.
//!
//! Every function here runs in the parent, allocates freely and never panics: a rejection is a
//! [`ParseError`] whose message names the value, quotes the input and says what was expected.
//! Formatting functions produce the shortest string the parser maps back to the same value, so
//! `run -v` and JSON reports show values the user can paste back.

use std::time::Duration;

use super::LimitsSpec;

/// A rejected value: which kind of value, the offending input and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ParseError {
    /// What was being parsed (`memory size`, `timeout`, `pids count`, ...).
    pub what: &'static str,
    /// The input, cut to a readable length.
    pub input: String,
    /// Why it was rejected and what is expected instead.
    pub reason: String,
}

impl ParseError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> ParseError {
        // Keep messages readable when fed a megabyte of garbage; cut on a char boundary.
        const MAX: usize = 64;
        let input = if input.len() > MAX {
            let mut end = MAX;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}...", &input[..end])
        } else {
            input.to_owned()
        };
        ParseError {
            what,
            input,
            reason: reason.into(),
        }
    }
}

/// Words that lift a limit (map to `None`).
const UNLIMITED: [&str; 4] = ["max", "unlimited", "infinity", "none"];

fn is_unlimited(s: &str) -> bool {
    UNLIMITED.iter().any(|w| s.eq_ignore_ascii_case(w))
}

/// Nanosecond-style fixed point: the value times 10^9.
const SCALE: u128 = 1_000_000_000;

/// Splits `s` into the longest leading decimal number and the rest (the unit).
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Parses `digits[.digits]` (at most nine decimal places) into value × 10^9.
fn parse_fixed(num: &str, what: &'static str, input: &str) -> Result<u128, ParseError> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (num, None),
    };
    if int.is_empty() && frac.unwrap_or("").is_empty() {
        return Err(ParseError::new(what, input, "expected a number"));
    }
    if int.is_empty() || frac.is_some_and(str::is_empty) {
        return Err(ParseError::new(
            what,
            input,
            "a decimal point needs digits on both sides (write 0.5, not .5 or 5.)",
        ));
    }
    let frac = frac.unwrap_or("");
    if frac.contains('.') {
        return Err(ParseError::new(what, input, "more than one decimal point"));
    }
    if frac.len() > 9 {
        return Err(ParseError::new(what, input, "at most nine decimal places"));
    }
    // 20 significant integer digits cover u64::MAX; leading zeros are harmless.
    let int = int.trim_start_matches('0');
    if int.len() > 20 {
        return Err(ParseError::new(what, input, "number too large"));
    }
    let mut value: u128 = 0;
    for b in int.bytes() {
        value = value * 10 + u128::from(b - b'0');
    }
    let mut f: u128 = 0;
    for b in frac.bytes() {
        f = f * 10 + u128::from(b - b'0');
    }
    let frac_scale = 10u128.pow(9 - frac.len() as u32);
    Ok(value * SCALE + f * frac_scale)
}

/// Parses a size in bytes (`512M`, `1.5G`, `100k`, `4096`). Rejects `max`.
///
/// # Errors
/// A [`ParseError`] naming `what` for anything else than a non-negative size that fits in u64.
pub(crate) fn parse_size_as(what: &'static str, s: &str) -> Result<u64, ParseError> {
    const EXPECTED: &str = "expected a size such as 4096, 100k, 512M, 1.5G or 2T";
    let t = s.trim();
    if t.is_empty() {
        return Err(ParseError::new(what, s, EXPECTED));
    }
    if t.starts_with('-') {
        return Err(ParseError::new(what, s, "a size cannot be negative"));
    }
    let (num, unit) = split_number(t);
    if num.is_empty() {
        return Err(ParseError::new(what, s, EXPECTED));
    }
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => {
            return Err(ParseError::new(
                what,
                s,
                format!("unknown unit {unit:?}: use k, M, G, T or P (powers of 1024)"),
            ))
        }
    };
    let fixed = parse_fixed(num, what, s)?;
    if mult == 1 && fixed % SCALE != 0 {
        return Err(ParseError::new(
            what,
            s,
            "a byte count must be a whole number",
        ));
    }
    let bytes = fixed.checked_mul(mult).map(|v| v / SCALE);
    match bytes.and_then(|b| u64::try_from(b).ok()) {
        Some(b) => Ok(b),
        None => Err(ParseError::new(
            what,
            s,
            "too large (at most 16E - 1 bytes)",
        )),
    }
}

/// Parses a size in bytes; see [`parse_size_as`].
///
/// # Errors
/// A [`ParseError`] for anything that is not a size.
#[cfg(test)]
pub(crate) fn parse_size(s: &str) -> Result<u64, ParseError> {
    parse_size_as("size", s)
}

/// Parses a size limit: a size, or `max`/`unlimited` (→ `None`).
///
/// # Errors
/// A [`ParseError`] naming `what`.
pub(crate) fn parse_size_limit_as(what: &'static str, s: &str) -> Result<Option<u64>, ParseError> {
    if is_unlimited(s.trim()) {
        return Ok(None);
    }
    parse_size_as(what, s).map(Some)
}

/// The smallest memory limit accepted: below this the sandbox's own init cannot run.
pub(crate) const MIN_MEMORY: u64 = 1 << 20;

/// Parses `--memory`: a size of at least 1M, or `max`.
///
/// # Errors
/// A [`ParseError`] for a malformed or too small size.
pub fn parse_memory(s: &str) -> Result<Option<u64>, ParseError> {
    let v = parse_size_limit_as("memory size", s)?;
    if let Some(b) = v {
        if b < MIN_MEMORY {
            return Err(ParseError::new(
                "memory size",
                s,
                "too small: at least 1M (the sandbox's init alone needs that)",
            ));
        }
    }
    Ok(v)
}

/// Parses `--fsize` (largest file the sandbox may write): a size, or `max`.
///
/// # Errors
/// A [`ParseError`] for a malformed size.
pub fn parse_fsize(s: &str) -> Result<Option<u64>, ParseError> {
    parse_size_limit_as("file size", s)
}

/// Parses a positive integer count, or `max`/`unlimited` (→ `None`).
///
/// # Errors
/// A [`ParseError`] naming `what` for anything but an integer in `1..=max`.
pub(crate) fn parse_count_as(
    what: &'static str,
    s: &str,
    max: u64,
) -> Result<Option<u64>, ParseError> {
    let t = s.trim();
    if is_unlimited(t) {
        return Ok(None);
    }
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        let reason = if t.starts_with('-') {
            "must be positive".to_owned()
        } else {
            "expected a whole number or max".to_owned()
        };
        return Err(ParseError::new(what, s, reason));
    }
    match t.parse::<u64>() {
        Ok(0) => Err(ParseError::new(what, s, "must be at least 1")),
        Ok(n) if n <= max => Ok(Some(n)),
        _ => Err(ParseError::new(
            what,
            s,
            format!("too large (at most {max})"),
        )),
    }
}

/// Kernel bound on pids (`PID_MAX_LIMIT` on 64-bit).
pub(crate) const MAX_PIDS: u64 = 4_194_304;
/// Bound on open files: fs.nr_open cannot exceed this (`INT_MAX & ~63` rounded down).
pub(crate) const MAX_NOFILE: u64 = 1 << 30;

/// Parses `--pids`: 1..=4194304, or `max`.
///
/// # Errors
/// A [`ParseError`] for anything else.
pub fn parse_pids(s: &str) -> Result<Option<u64>, ParseError> {
    parse_count_as("pids count", s, MAX_PIDS)
}

/// Parses `--nofile`: 1..=2^30, or `max`.
///
/// # Errors
/// A [`ParseError`] for anything else.
pub fn parse_nofile(s: &str) -> Result<Option<u64>, ParseError> {
    parse_count_as("open-files count", s, MAX_NOFILE)
}

/// The smallest CPU fraction (the kernel's minimum quota is 1 ms per 100 ms period).
pub(crate) const MIN_CPUS: f64 = 0.01;
/// The largest CPU count accepted.
pub(crate) const MAX_CPUS: f64 = 65_536.0;

/// Parses `--cpus`: a decimal number of CPUs in `0.01..=65536`, or `max` (→ `None`).
///
/// # Errors
/// A [`ParseError`] for anything else.
pub fn parse_cpus(s: &str) -> Result<Option<f64>, ParseError> {
    const WHAT: &str = "CPU count";
    let t = s.trim();
    if is_unlimited(t) {
        return Ok(None);
    }
    if t.starts_with('-') {
        return Err(ParseError::new(WHAT, s, "must be positive"));
    }
    let (num, rest) = split_number(t);
    if num.is_empty() || !rest.is_empty() {
        return Err(ParseError::new(
            WHAT,
            s,
            "expected a number of CPUs such as 0.5, 1 or 2.5",
        ));
    }
    let mut parts = num.split('.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    if parts.next().is_some() {
        return Err(ParseError::new(WHAT, s, "more than one decimal point"));
    }
    if int.is_empty() || frac.is_some_and(str::is_empty) {
        return Err(ParseError::new(
            WHAT,
            s,
            "a decimal point needs digits on both sides (write 0.5, not .5 or 5.)",
        ));
    }
    if num.len() > 40 {
        return Err(ParseError::new(WHAT, s, "too many digits"));
    }
    // The grammar above admits only digits and one inner point, so this is a finite number.
    let v: f64 = num
        .parse()
        .map_err(|_| ParseError::new(WHAT, s, "expected a number of CPUs"))?;
    check_cpus(v).map_err(|reason| ParseError::new(WHAT, s, reason))?;
    Ok(Some(v))
}

fn check_cpus(v: f64) -> Result<(), &'static str> {
    if !v.is_finite() {
        Err("must be a finite number")
    } else if v < MIN_CPUS {
        Err("too small: at least 0.01")
    } else if v > MAX_CPUS {
        Err("too large: at most 65536")
    } else {
        Ok(())
    }
}

/// The longest duration accepted, in seconds.
pub(crate) const MAX_DURATION_SECS: u64 = u32::MAX as u64;

/// Parses a duration: `30`, `1.5s`, `500ms`, `2m`, `1h`, `1d` (bare numbers are seconds).
///
/// # Errors
/// A [`ParseError`] naming `what` for anything else or a duration above `u32::MAX` seconds.
pub(crate) fn parse_duration_as(what: &'static str, s: &str) -> Result<Duration, ParseError> {
    const EXPECTED: &str = "expected a duration such as 30, 1.5s, 500ms, 2m, 1h or 1d";
    let t = s.trim();
    if t.starts_with('-') {
        return Err(ParseError::new(what, s, "a duration cannot be negative"));
    }
    let (num, unit) = split_number(t);
    if num.is_empty() {
        return Err(ParseError::new(what, s, EXPECTED));
    }
    let unit_ns: u128 = match unit {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => {
            return Err(ParseError::new(
                what,
                s,
                format!("unknown unit {unit:?}: use ms, s, m, h or d"),
            ))
        }
    };
    let fixed = parse_fixed(num, what, s)?;
    let too_long = || ParseError::new(what, s, format!("too long (at most {MAX_DURATION_SECS}s)"));
    // fixed < 10^30 and unit_ns < 10^14: the product fits in u128 (< 3.4 * 10^38).
    let nanos = fixed.checked_mul(unit_ns).ok_or_else(too_long)? / SCALE;
    let secs = nanos / 1_000_000_000;
    if secs > u128::from(MAX_DURATION_SECS) {
        return Err(too_long());
    }
    // Both fit: secs <= u32::MAX and the remainder < 10^9.
    Ok(Duration::new(secs as u64, (nanos % 1_000_000_000) as u32))
}

/// Parses a duration; see [`parse_duration_as`].
///
/// # Errors
/// A [`ParseError`] for anything that is not a duration.
#[cfg(test)]
pub(crate) fn parse_duration(s: &str) -> Result<Duration, ParseError> {
    parse_duration_as("duration", s)
}

/// Parses `--timeout` into seconds for [`LimitsSpec::timeout`]. As in timeout(1), `0` means no
/// timeout; so do `none`, `max` and `unlimited`.
///
/// # Errors
/// A [`ParseError`] for a malformed duration.
pub fn parse_timeout(s: &str) -> Result<Option<f64>, ParseError> {
    if is_unlimited(s.trim()) {
        return Ok(None);
    }
    let d = parse_duration_as("timeout", s)?;
    Ok((!d.is_zero()).then_some(d.as_secs_f64()))
}

/// Formats bytes with the largest binary unit that divides them exactly (`512M`, `1536k`,
/// `4097`): the size parser maps the result back to the same value.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1 << 50, "P"),
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "k"),
    ];
    if bytes != 0 {
        for (mult, name) in UNITS {
            if bytes.checked_rem(mult) == Some(0) {
                return format!("{}{name}", bytes / mult);
            }
        }
    }
    bytes.to_string()
}

/// Formats a size limit: `max` for `None`.
pub fn format_size_limit(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "max".to_owned(), format_size)
}

/// Formats a duration exactly (`2m`, `1h`, `1.5s`, `0.000000001s`): the duration parser maps the
/// result back to the same value.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        for (mult, name) in [(86_400, "d"), (3_600, "h"), (60, "m")] {
            if secs != 0 && secs.checked_rem(mult) == Some(0) {
                return format!("{}{name}", secs / mult);
            }
        }
        return format!("{secs}s");
    }
    let frac = format!("{nanos:09}");
    format!("{secs}.{}s", frac.trim_end_matches('0'))
}

/// Formats a CPU count (`0.5`, `2`): the shortest decimal that parses back to the same value.
pub(crate) fn format_cpus(cpus: f64) -> String {
    // f64's Display never uses exponent notation and prints the shortest round-trip digits.
    format!("{cpus}")
}

/// [`LimitsSpec::validate`]: the same bounds as the parsers.
pub(crate) fn validate(l: &LimitsSpec) -> Result<(), ParseError> {
    if let Some(m) = l.memory {
        if m < MIN_MEMORY {
            return Err(ParseError::new(
                "memory size",
                &format_size(m),
                "too small: at least 1M",
            ));
        }
    }
    if let Some(p) = l.pids {
        if p == 0 || p > MAX_PIDS {
            return Err(ParseError::new(
                "pids count",
                &p.to_string(),
                format!("must be in 1..={MAX_PIDS}"),
            ));
        }
    }
    if let Some(n) = l.nofile {
        if n == 0 || n > MAX_NOFILE {
            return Err(ParseError::new(
                "open-files count",
                &n.to_string(),
                format!("must be in 1..={MAX_NOFILE}"),
            ));
        }
    }
    if let Some(c) = l.cpus {
        check_cpus(c).map_err(|reason| ParseError::new("CPU count", &format_cpus(c), reason))?;
    }
    if let Some(t) = l.timeout {
        if !t.is_finite() || t < 0.0 || t > MAX_DURATION_SECS as f64 {
            return Err(ParseError::new(
                "timeout",
                &t.to_string(),
                format!("must be between 0 and {MAX_DURATION_SECS} seconds"),
            ));
        }
    }
    Ok(())
}

/// Formats every limit on one line (only the tests use it, for the round trip):
/// `pids=1024 memory=12G cpus=max timeout=none nofile=4096 fsize=max core=0`.
#[cfg(test)]
pub(crate) fn format_limits(l: &LimitsSpec) -> String {
    let count = |v: Option<u64>| v.map_or_else(|| "max".to_owned(), |n| n.to_string());
    let timeout = l.timeout.map_or_else(
        || "none".to_owned(),
        |t| match Duration::try_from_secs_f64(t) {
            Ok(d) => format_duration(d),
            Err(_) => format!("{t}s"),
        },
    );
    format!(
        "pids={} memory={} cpus={} timeout={} nofile={} fsize={} core={}",
        count(l.pids),
        format_size_limit(l.memory),
        l.cpus.map_or_else(|| "max".to_owned(), format_cpus),
        timeout,
        count(l.nofile),
        format_size_limit(l.fsize),
        if l.no_core { "0" } else { "host" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("100k").unwrap(), 102_400);
        assert_eq!(parse_size("100K").unwrap(), 102_400);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("512mb").unwrap(), 512 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("0.5k").unwrap(), 512);
        assert_eq!(
            parse_size("0.3k").unwrap(),
            307,
            "fractions of a unit round down"
        );
        assert_eq!(parse_size(" 2T ").unwrap(), 2 << 40);
        assert_eq!(parse_size("10b").unwrap(), 10);
        assert_eq!(parse_size("18446744073709551615").unwrap(), u64::MAX);
        assert_eq!(parse_size("000000000000000000000000001k").unwrap(), 1024);
        assert_eq!(parse_size_limit_as("x", "max").unwrap(), None);
        assert_eq!(parse_size_limit_as("x", "Unlimited").unwrap(), None);
        assert_eq!(parse_memory("64M").unwrap(), Some(64 << 20));
        assert_eq!(parse_fsize("max").unwrap(), None);
    }

    #[test]
    fn size_rejections_say_why() {
        let msg = |s: &str| parse_size(s).unwrap_err().to_string();
        assert_eq!(
            msg(""),
            r#"invalid size "": expected a size such as 4096, 100k, 512M, 1.5G or 2T"#
        );
        assert!(msg("-5M").contains("cannot be negative"), "{}", msg("-5M"));
        assert!(msg("5X").contains(r#"unknown unit "X""#), "{}", msg("5X"));
        assert!(msg("1.5").contains("whole number"));
        assert!(msg(".5G").contains("both sides"));
        assert!(msg("5.G").contains("both sides"));
        assert!(msg("1.2.3G").contains("more than one decimal point"));
        assert!(msg("1.0000000001G").contains("nine decimal places"));
        assert!(msg("18446744073709551616").contains("too large"));
        assert!(msg("16384P").contains("too large"));
        assert!(msg("M").contains("expected a size"));
        assert!(
            msg("max").contains("expected a size"),
            "max is only a limit"
        );
        assert!(msg("1e9").contains("unknown unit"));
        assert!(msg("nan").contains("expected a size"));
        assert!(parse_memory("512k")
            .unwrap_err()
            .to_string()
            .contains("at least 1M"));
        let long = "9".repeat(10_000);
        let m = msg(&long);
        assert!(m.len() < 200, "long inputs are cut: {m}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(
            parse_duration("0.000000001").unwrap(),
            Duration::from_nanos(1)
        );
        assert_eq!(
            parse_duration("4294967295").unwrap(),
            Duration::from_secs(u32::MAX.into())
        );
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(parse_timeout("none").unwrap(), None);
        assert_eq!(parse_timeout("2.5").unwrap(), Some(2.5));
        let msg = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert!(msg("4294967296").contains("too long"));
        assert!(msg("49711d").contains("too long"));
        assert!(msg("1x").contains(r#"unknown unit "x""#));
        assert!(
            msg("1H").contains("unknown unit"),
            "units are case-sensitive: m is not M"
        );
        assert!(msg("-1").contains("negative"));
        assert!(msg("").contains("expected a duration"));
        assert!(msg("1h30m").contains("unknown unit"));
        assert!(parse_timeout("abc")
            .unwrap_err()
            .to_string()
            .starts_with("invalid timeout \"abc\""));
    }

    #[test]
    fn cpus_and_counts() {
        assert_eq!(parse_cpus("0.5").unwrap(), Some(0.5));
        assert_eq!(parse_cpus("2").unwrap(), Some(2.0));
        assert_eq!(parse_cpus("max").unwrap(), None);
        for bad in [
            "0", "0.001", "-1", "inf", "NaN", "1e3", "1.", ".5", "100000", "1,5", "",
        ] {
            assert!(parse_cpus(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_pids("1024").unwrap(), Some(1024));
        assert_eq!(parse_pids("max").unwrap(), None);
        assert!(parse_pids("0")
            .unwrap_err()
            .to_string()
            .contains("at least 1"));
        assert!(parse_pids("-3")
            .unwrap_err()
            .to_string()
            .contains("positive"));
        assert!(parse_pids("99999999999999999999999")
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert!(parse_pids("4194305").is_err());
        assert!(parse_nofile("12a")
            .unwrap_err()
            .to_string()
            .contains("whole number"));
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(3 << 29), "1536M");
        assert_eq!(format_size(0), "0");
        assert_eq!(format_size(4097), "4097");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_cpus(0.5), "0.5");
        assert_eq!(format_cpus(2.0), "2");
    }

    #[test]
    fn validate_and_display() {
        let mut l = LimitsSpec {
            pids: Some(1024),
            memory: Some(1 << 30),
            nofile: Some(4096),
            no_core: true,
            ..Default::default()
        };
        assert_eq!(l.validate(), Ok(()));
        assert_eq!(
            format_limits(&l),
            "pids=1024 memory=1G cpus=max timeout=none nofile=4096 fsize=max core=0"
        );
        l.timeout = Some(90.0);
        l.cpus = Some(1.5);
        assert_eq!(
            format_limits(&l),
            "pids=1024 memory=1G cpus=1.5 timeout=90s nofile=4096 fsize=max core=0"
        );
        l.cpus = Some(f64::NAN);
        assert!(l.validate().is_err());
        l.cpus = None;
        l.memory = Some(10);
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least 1M"));
        l.memory = None;
        l.timeout = Some(-1.0);
        assert!(l.validate().is_err());
        l.timeout = None;
        l.pids = Some(0);
        assert!(l.validate().is_err());
    }

    /// xorshift64*: a tiny deterministic PRNG so the fuzz test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random string biased towards the parsers' alphabet, with some arbitrary chars.
    fn random_input(rng: &mut Rng) -> String {
        const ALPHABET: &[&str] = &[
            "0",
            "1",
            "5",
            "9",
            ".",
            "-",
            "+",
            " ",
            "k",
            "K",
            "m",
            "M",
            "g",
            "G",
            "t",
            "T",
            "p",
            "P",
            "b",
            "B",
            "i",
            "ms",
            "s",
            "h",
            "d",
            "e",
            "max",
            "inf",
            "nan",
            "x",
            "é",
            "\u{0}",
            "\u{200b}",
            "99999999999",
            "٣",
            "１",
        ];
        let len = rng.below(12);
        let mut s = String::new();
        for _ in 0..len {
            if rng.below(20) == 0 {
                s.push(char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?'));
            } else {
                s.push_str(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]);
            }
        }
        s
    }

    #[test]
    fn fuzz_parsers_never_panic_and_round_trip() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0u32;
        for _ in 0..100_000 {
            let s = random_input(&mut rng);
            if let Ok(v) = parse_size(&s) {
                accepted += 1;
                assert_eq!(parse_size(&format_size(v)), Ok(v), "size {s:?}");
            }
            if let Ok(Some(v)) = parse_memory(&s) {
                assert!(v >= MIN_MEMORY, "{s:?}");
            }
            if let Ok(d) = parse_duration(&s) {
                accepted += 1;
                assert!(d.as_secs() <= MAX_DURATION_SECS);
                assert_eq!(parse_duration(&format_duration(d)), Ok(d), "duration {s:?}");
            }
            if let Ok(Some(t)) = parse_timeout(&s) {
                assert!(t > 0.0 && t.is_finite(), "{s:?}");
            }
            if let Ok(Some(c)) = parse_cpus(&s) {
                accepted += 1;
                assert!((MIN_CPUS..=MAX_CPUS).contains(&c), "{s:?}");
                assert_eq!(parse_cpus(&format_cpus(c)), Ok(Some(c)), "cpus {s:?}");
            }
            if let Ok(Some(n)) = parse_pids(&s) {
                assert!((1..=MAX_PIDS).contains(&n));
                assert_eq!(parse_pids(&n.to_string()), Ok(Some(n)));
            }
            let errors = [
                parse_size(&s).err(),
                parse_duration(&s).err(),
                parse_nofile(&s).err(),
            ];
            for e in errors.into_iter().flatten() {
                let m = e.to_string();
                assert!(m.starts_with("invalid ") && m.len() < 300, "{m}");
            }
        }
        assert!(
            accepted > 1000,
            "the generator must also produce valid inputs ({accepted})"
        );
    }

    /// Every rejection of every parser is one readable line: `invalid <what> "<input>": <why>`,
    /// with the input quoted (escaped, cut to 64 bytes) and a non-empty reason, whatever the
    /// input (control characters, invalid-looking Unicode, a megabyte of digits).
    #[test]
    fn fuzz_rejections_are_one_clear_line() {
        type Parser = fn(&str) -> Result<(), ParseError>;
        let parsers: [(&str, Parser); 8] = [
            ("size", |s| parse_size(s).map(drop)),
            ("memory size", |s| parse_memory(s).map(drop)),
            ("file size", |s| parse_fsize(s).map(drop)),
            ("pids count", |s| parse_pids(s).map(drop)),
            ("open-files count", |s| parse_nofile(s).map(drop)),
            ("CPU count", |s| parse_cpus(s).map(drop)),
            ("duration", |s| parse_duration(s).map(drop)),
            ("timeout", |s| parse_timeout(s).map(drop)),
        ];
        let mut rng = Rng(0x0123_4567_89AB_CDEF);
        let mut inputs: Vec<String> = (0..30_000).map(|_| random_input(&mut rng)).collect();
        inputs.extend([
            "9".repeat(1 << 20),
            "\n512M".into(),
            "512M\n\t".into(),
            "\u{7f}\u{1b}[31m".into(),
            "é".repeat(40),
        ]);
        let mut rejected = 0u32;
        for s in &inputs {
            for (what, parse) in parsers {
                let Err(e) = parse(s) else { continue };
                rejected += 1;
                let m = e.to_string();
                assert_eq!(e.what, what, "{m}");
                assert!(m.starts_with(&format!("invalid {what} \"")), "{m}");
                assert!(!m.contains(['\n', '\r']), "not one line: {m:?}");
                assert!(!m.chars().any(|c| c.is_control()), "control char: {m:?}");
                assert!(m.len() < 400, "too long: {m}");
                assert!(!e.reason.trim().is_empty(), "no reason: {m}");
                assert!(e.input.len() <= 64 + 3, "input not cut: {}", e.input.len());
            }
        }
        assert!(
            rejected > 10_000,
            "the generator must produce rejections ({rejected})"
        );
    }

    #[test]
    fn fuzz_values_round_trip() {
        let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
        for _ in 0..100_000 {
            // Sizes: raw, and shifted so exact units are common.
            let v = rng.next() >> rng.below(64);
            let v = if rng.below(2) == 0 {
                v
            } else {
                (v >> 20) << (10 * rng.below(5))
            };
            assert_eq!(parse_size(&format_size(v)), Ok(v), "{v}");
            let d = Duration::new(
                rng.below(MAX_DURATION_SECS + 1),
                (rng.below(3) * rng.below(1_000_000_000)) as u32,
            );
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{d:?}");
            let c = MIN_CPUS + (rng.next() as f64 / u64::MAX as f64) * (64.0 - MIN_CPUS);
            assert_eq!(parse_cpus(&format_cpus(c)), Ok(Some(c)), "{c}");
        }
    }
}

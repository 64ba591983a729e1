//! Durations as routes.toml writes them: `"500ms"`, `"10s"`, `"5m"`, `"2h"`, `"7d"`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let split =
            s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("{s:?} has no unit (use ms, s, m, h or d)"))?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like \"500ms\", \"10s\", \"5m\", \"2h\" or \"7d\""))?;
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("{s:?} has an unknown unit {unit:?} (use ms, s, m, h or d)")),
        };
        n.checked_mul(unit_ms).map(|ms| Self(Duration::from_millis(ms))).ok_or_else(|| format!("{s:?} is too long"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let ms = |s| ConfigDuration::parse(s).unwrap().0.as_millis();
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("7d"), 604_800_000);
        assert_eq!(ms("0s"), 0);
    }

    #[test]
    fn rejects_the_rest() {
        for bad in ["", "10", "s", "1.5s", "10 s", "-1s", "10sec", "1w", "99999999999999999999d"] {
            assert!(ConfigDuration::parse(bad).is_err(), "{bad:?} passed");
        }
    }
}

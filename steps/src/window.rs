//! Maintenance windows: when an unattended upgrade may start.
//!
//! A window is written `DAYS HH:MM-HH:MM`, e.g. `Mon-Fri 02:00-04:00`, `Sat,Sun 22:30-01:00`,
//! `daily 03:00-05:00`, in a time zone (the host's unless one is named). `DAYS` are the days
//! a window *opens* on (`Mon`..`Sun`, ranges such as `Fri-Mon` wrap around, `daily` or `*`);
//! an end at or before the start means the window closes the next day. Times are wall-clock
//! times in the zone: across a daylight-saving change a window lasts what the clocks say (a
//! start the clocks skip opens when they resume; a window over a repeated hour is an hour
//! longer).
//!
//! [`Window::decide`] answers for an instant and the downtime an upgrade needs: start now (it
//! fits before the window closes), too close to the end, or wait until the next opening.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct Window {
    days: BTreeSet<u8>,
    start: Time,
    end: Time,
    tz: TimeZone,
    text: String,
}

/// What an unattended upgrade should do at an instant.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Inside a window with enough time left: start; the window closes at `closes`.
    Start { closes: Zoned },
    /// Inside a window, but the upgrade needs `need` and only `left` remains.
    TooClose {
        closes: Zoned,
        left: SignedDuration,
        need: SignedDuration,
    },
    /// Outside every window: the next one opens at `opens`.
    Wait { opens: Zoned },
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn day(name: &str) -> Result<u8, String> {
    let n = name.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|(short, w)| n == *short || n == format!("{w:?}").to_ascii_lowercase())
        .map(|i| i as u8)
        .ok_or_else(|| format!("`{name}` is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

fn time(text: &str) -> Result<Time, String> {
    let bad = || format!("`{text}` is not a time of day (HH:MM, 00:00 to 23:59)");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// An instant as windows are shown: `Tue 2026-11-24 04:00 CET`.
pub fn shown(z: &Zoned) -> String {
    z.strftime("%a %Y-%m-%d %H:%M %Z").to_string()
}

/// A time zone by name, or the host's.
pub fn zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        Some(n) => TimeZone::get(n).map_err(|_| {
            format!("unknown time zone `{n}` (an IANA name such as Europe/Berlin or UTC)")
        }),
        None => Ok(TimeZone::system()),
    }
}

impl Window {
    /// Parse `DAYS HH:MM-HH:MM` in `tz`.
    pub fn parse(text: &str, tz: TimeZone) -> Result<Window, String> {
        let what = |e: String| format!("maintenance window `{text}`: {e}");
        let (days_text, times) = text.trim().rsplit_once(' ').ok_or_else(|| {
            what("expected `DAYS HH:MM-HH:MM`, e.g. `Mon-Fri 02:00-04:00`".into())
        })?;
        let (from, to) = times
            .split_once('-')
            .ok_or_else(|| what(format!("`{times}` is not HH:MM-HH:MM")))?;
        let (start, end) = (time(from).map_err(what)?, time(to).map_err(what)?);
        if start == end {
            return Err(what(
                "it is empty (it starts when it ends); for all day, write 00:00-23:59".into(),
            ));
        }
        let mut days = BTreeSet::new();
        for item in days_text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                return Err(what("no day named".into()));
            }
            if item == "*" || item.eq_ignore_ascii_case("daily") {
                days.extend(0..7);
            } else if let Some((a, b)) = item.split_once('-') {
                let (a, b) = (day(a).map_err(what)?, day(b).map_err(what)?);
                let mut d = a;
                loop {
                    days.insert(d);
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            } else {
                days.insert(day(item).map_err(what)?);
            }
        }
        Ok(Window {
            days,
            start,
            end,
            tz,
            text: text.trim().to_string(),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn opens_on(&self, d: Date) -> bool {
        let i = d.weekday().to_monday_zero_offset() as u8;
        self.days.contains(&i)
    }

    /// The window that opens on `d`: its opening and closing instants.
    fn span(&self, d: Date) -> Option<(Zoned, Zoned)> {
        let end_day = if self.end <= self.start {
            d.tomorrow().ok()?
        } else {
            d
        };
        let opens = d.to_datetime(self.start).to_zoned(self.tz.clone()).ok()?;
        let closes = end_day
            .to_datetime(self.end)
            .to_zoned(self.tz.clone())
            .ok()?;
        Some((opens, closes))
    }

    /// Whether an upgrade needing `need` may start at `now`.
    pub fn decide(&self, now: Timestamp, need: SignedDuration) -> Decision {
        let here = now.to_zoned(self.tz.clone());
        let today = here.date();
        let yesterday = today.yesterday().unwrap_or(today);
        for d in [yesterday, today] {
            if !self.opens_on(d) {
                continue;
            }
            let Some((opens, closes)) = self.span(d) else {
                continue;
            };
            if opens.timestamp() <= now && now < closes.timestamp() {
                let left = closes.timestamp().duration_since(now);
                return if left >= need {
                    Decision::Start { closes }
                } else {
                    Decision::TooClose { closes, left, need }
                };
            }
        }
        let mut d = today;
        for _ in 0..8 {
            if self.opens_on(d) {
                if let Some((opens, _)) = self.span(d) {
                    if opens.timestamp() > now {
                        return Decision::Wait { opens };
                    }
                }
            }
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => break,
            }
        }
        unreachable!("a window with at least one day opens within a week")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, tz: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = text.parse().unwrap();
        dt.to_zoned(TimeZone::get(tz).unwrap()).unwrap().timestamp()
    }

    fn w(text: &str, tz: &str) -> Window {
        Window::parse(text, TimeZone::get(tz).unwrap()).unwrap()
    }

    fn mins(m: i64) -> SignedDuration {
        SignedDuration::from_mins(m)
    }

    const B: &str = "Europe/Berlin";

    #[test]
    fn inside_outside_and_too_close_to_the_end() {
        let win = w("Mon-Fri 02:00-04:00", B);
        // 2026-11-24 is a Tuesday.
        match win.decide(at("2026-11-24T02:30", B), mins(30)) {
            Decision::Start { closes } => assert_eq!(shown(&closes), "Tue 2026-11-24 04:00 CET"),
            d => panic!("{d:?}"),
        }
        match win.decide(at("2026-11-24T03:45", B), mins(30)) {
            Decision::TooClose { left, need, .. } => {
                assert_eq!((left, need), (mins(15), mins(30)))
            }
            d => panic!("{d:?}"),
        }
        match win.decide(at("2026-11-24T05:00", B), mins(30)) {
            Decision::Wait { opens } => assert_eq!(shown(&opens), "Wed 2026-11-25 02:00 CET"),
            d => panic!("{d:?}"),
        }
        // Saturday: the next window is Monday's. The end itself is outside.
        match win.decide(at("2026-11-28T10:00", B), mins(30)) {
            Decision::Wait { opens } => assert_eq!(shown(&opens), "Mon 2026-11-30 02:00 CET"),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            win.decide(at("2026-11-24T04:00", B), mins(1)),
            Decision::Wait { .. }
        ));
        assert!(matches!(
            win.decide(at("2026-11-24T02:00", B), mins(120)),
            Decision::Start { .. }
        ));
    }

    #[test]
    fn a_window_crossing_midnight_belongs_to_the_day_it_opens() {
        let win = w("Fri 23:00-01:00", B);
        match win.decide(at("2026-11-28T00:30", B), mins(20)) {
            Decision::Start { closes } => assert_eq!(shown(&closes), "Sat 2026-11-28 01:00 CET"),
            d => panic!("{d:?}"),
        }
        match win.decide(at("2026-11-27T22:00", B), mins(20)) {
            Decision::Wait { opens } => assert_eq!(shown(&opens), "Fri 2026-11-27 23:00 CET"),
            d => panic!("{d:?}"),
        }
        // Saturday night is not Friday night.
        match win.decide(at("2026-11-29T00:30", B), mins(20)) {
            Decision::Wait { opens } => assert_eq!(shown(&opens), "Fri 2026-12-04 23:00 CET"),
            d => panic!("{d:?}"),
        }
        // Ranges wrap around the week.
        let weekend = w("Fri-Mon 01:00-02:00", "UTC");
        assert_eq!(weekend.days, [0u8, 4, 5, 6].into_iter().collect());
    }

    #[test]
    fn daylight_saving_changes_follow_the_clocks() {
        // 2026-03-29: Berlin's clocks jump from 02:00 to 03:00. A 02:00-04:00 window opens
        // when the clocks resume and lasts one hour.
        let win = w("Sun 02:00-04:00", B);
        match win.decide(at("2026-03-29T01:30", B), mins(30)) {
            Decision::Wait { opens } => assert_eq!(shown(&opens), "Sun 2026-03-29 03:00 CEST"),
            d => panic!("{d:?}"),
        }
        match win.decide(at("2026-03-29T03:10", B), mins(60)) {
            Decision::TooClose { left, .. } => assert_eq!(left, mins(50)),
            d => panic!("{d:?}"),
        }
        // 2026-10-25: 03:00 CEST becomes 02:00 CET. A 01:00-04:00 window lasts four hours.
        let win = w("Sun 01:00-04:00", B);
        let opened = at("2026-10-25T01:00", B);
        match win.decide(opened, mins(240)) {
            Decision::Start { closes } => {
                assert_eq!(shown(&closes), "Sun 2026-10-25 04:00 CET");
                assert_eq!(closes.timestamp().duration_since(opened), mins(240));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn bad_windows_and_zones_are_refused_clearly() {
        let utc = || TimeZone::UTC;
        for (text, says) in [
            ("Mon 02:00-02:00", "it is empty"),
            ("Mon 02:00", "is not HH:MM-HH:MM"),
            ("Funday 02:00-03:00", "`Funday` is not a day"),
            ("Mon 25:00-03:00", "`25:00` is not a time"),
            ("Mon 02:60-03:00", "`02:60` is not a time"),
            ("02:00-03:00", "expected `DAYS HH:MM-HH:MM`"),
            ("Mon, 02:00-03:00", "no day named"),
        ] {
            let e = Window::parse(text, utc()).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
            assert!(e.contains(text.trim()), "{e}");
        }
        assert!(zone(Some("Mars/Olympus"))
            .unwrap_err()
            .contains("unknown time zone `Mars/Olympus`"));
        assert!(zone(Some(B)).is_ok());
        let all = Window::parse("daily 00:00-23:59", utc()).unwrap();
        assert_eq!(all.days.len(), 7);
        assert_eq!(all.text(), "daily 00:00-23:59");
    }
}

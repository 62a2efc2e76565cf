//! Rotation windows (`spec.rotation.windows`): the times of the week in which a scheduled
//! rotation may start. Pure: whether a window is open at an instant, and when one opens next.
//!
//! A window is a start and an end on a 24-hour clock, in a time zone, on some days of the week
//! (every day by default); one that ends at or before its start runs into the next day. Clock
//! times that a daylight saving change skips or repeats resolve as `Disambiguation::Compatible`
//! does (a skipped time moves forward by the gap, a repeated one takes its first occurrence).

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::civil::{Date, Time, Weekday as CivilWeekday};
use k8s_openapi::jiff::tz::TimeZone;

use crate::api::{RotationWindow, Weekday};

/// The windows of a spec, parsed.
#[derive(Clone, Debug)]
pub struct Schedule {
    windows: Vec<Window>,
}

#[derive(Clone, Debug)]
struct Window {
    days: Vec<CivilWeekday>,
    start: Time,
    end: Time,
    zone: TimeZone,
}

/// An opening of a window: from `0` (included) to `1` (excluded).
type Span = (Timestamp, Timestamp);

impl Schedule {
    /// Parses the windows of a spec; None when there are none (rotations may start any time). An
    /// unknown time zone or a malformed clock time is an error that names the window.
    pub fn parse(windows: &[RotationWindow]) -> Result<Option<Schedule>, String> {
        if windows.is_empty() {
            return Ok(None);
        }
        let windows = windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window::parse(w).map_err(|why| format!("spec.rotation.windows[{i}]: {why}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Schedule { windows }))
    }

    /// Whether a window is open at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        self.spans_around(at).any(|(start, end)| start <= at && at < end)
    }

    /// The first instant at or after `at` at which a window is open: `at` itself when one is.
    pub fn open_from(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_open(at) { Some(at) } else { self.next_opening_after(at) }
    }

    /// When a window next opens strictly after `at` (a window open at `at` does not count).
    pub fn next_opening_after(&self, at: Timestamp) -> Option<Timestamp> {
        self.spans_around(at).map(|(start, _)| start).filter(|start| *start > at).min()
    }

    /// Every opening that starts from the day before `at` to eight days after it, in each
    /// window's zone: enough for one open at `at` (a window is at most a day long) and for the
    /// next one of every window (each opens at least once a week).
    fn spans_around(&self, at: Timestamp) -> impl Iterator<Item = Span> + '_ {
        self.windows.iter().flat_map(move |w| w.spans_around(at))
    }
}

impl Window {
    fn parse(window: &RotationWindow) -> Result<Window, String> {
        let zone_name = window.time_zone.as_deref().unwrap_or("UTC");
        let zone = TimeZone::get(zone_name)
            .map_err(|_| format!("unknown time zone {zone_name:?} (an IANA name, e.g. Europe/Berlin)"))?;
        let clock = |field: &str, text: &str| {
            let parsed = text
                .split_once(':')
                .filter(|(h, m)| h.len() == 2 && m.len() == 2)
                .and_then(|(h, m)| Some((h.parse::<i8>().ok()?, m.parse::<i8>().ok()?)))
                .and_then(|(h, m)| Time::new(h, m, 0, 0).ok());
            parsed.ok_or_else(|| format!("{field} {text:?} is not a time \"HH:MM\" from 00:00 to 23:59"))
        };
        let start = clock("start", &window.start)?;
        let end = clock("end", &window.end)?;
        let mut days: Vec<CivilWeekday> = window.days.iter().map(|d| civil_weekday(*d)).collect();
        if days.is_empty() {
            days = (0..7).map(|i| CivilWeekday::Monday.wrapping_add(i)).collect();
        }
        Ok(Window { days, start, end, zone })
    }

    fn spans_around(&self, at: Timestamp) -> impl Iterator<Item = Span> + '_ {
        let today = at.to_zoned(self.zone.clone()).date();
        (-1..=8)
            .filter_map(move |offset| {
                let date = today.checked_add(k8s_openapi::jiff::Span::new().days(offset)).ok()?;
                self.days.contains(&date.weekday()).then(|| self.span_on(date)).flatten()
            })
            // A window that a daylight saving change skips entirely is not open that day.
            .filter(|(start, end)| start < end)
    }

    /// The opening of this window that starts on `date`.
    fn span_on(&self, date: Date) -> Option<Span> {
        let end_date = if self.end <= self.start { date.tomorrow().ok()? } else { date };
        let instant =
            |date: Date, time: Time| self.zone.to_ambiguous_timestamp(date.to_datetime(time)).compatible().ok();
        Some((instant(date, self.start)?, instant(end_date, self.end)?))
    }
}

fn civil_weekday(day: Weekday) -> CivilWeekday {
    match day {
        Weekday::Mon => CivilWeekday::Monday,
        Weekday::Tue => CivilWeekday::Tuesday,
        Weekday::Wed => CivilWeekday::Wednesday,
        Weekday::Thu => CivilWeekday::Thursday,
        Weekday::Fri => CivilWeekday::Friday,
        Weekday::Sat => CivilWeekday::Saturday,
        Weekday::Sun => CivilWeekday::Sunday,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[Weekday], start: &str, end: &str, zone: Option<&str>) -> RotationWindow {
        RotationWindow { days: days.to_vec(), start: start.into(), end: end.into(), time_zone: zone.map(Into::into) }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn schedule(windows: &[RotationWindow]) -> Schedule {
        Schedule::parse(windows).unwrap().unwrap()
    }

    #[test]
    fn no_windows_means_no_schedule() {
        assert!(Schedule::parse(&[]).unwrap().is_none());
    }

    #[test]
    fn a_daily_window_is_open_from_its_start_until_just_before_its_end() {
        let s = schedule(&[window(&[], "02:00", "05:00", None)]);
        // 2026-12-02 is a Wednesday.
        assert!(!s.is_open(at("2026-12-02T01:59:59Z")));
        assert!(s.is_open(at("2026-12-02T02:00:00Z")));
        assert!(s.is_open(at("2026-12-02T04:59:59Z")));
        assert!(!s.is_open(at("2026-12-02T05:00:00Z")));
        assert_eq!(s.open_from(at("2026-12-02T03:00:00Z")), Some(at("2026-12-02T03:00:00Z")));
        assert_eq!(s.open_from(at("2026-12-02T06:00:00Z")), Some(at("2026-12-03T02:00:00Z")));
        assert_eq!(s.next_opening_after(at("2026-12-02T03:00:00Z")), Some(at("2026-12-03T02:00:00Z")));
        assert_eq!(s.next_opening_after(at("2026-12-02T01:00:00Z")), Some(at("2026-12-02T02:00:00Z")));
    }

    #[test]
    fn a_window_that_ends_before_it_starts_runs_past_midnight_from_its_day() {
        // Fridays 22:00 to Saturdays 02:00.
        let s = schedule(&[window(&[Weekday::Fri], "22:00", "02:00", None)]);
        assert!(s.is_open(at("2026-12-04T23:00:00Z")), "Friday night");
        assert!(s.is_open(at("2026-12-05T01:30:00Z")), "early Saturday, still Friday's window");
        assert!(!s.is_open(at("2026-12-05T22:30:00Z")), "Saturday night is not a window");
        assert!(!s.is_open(at("2026-12-04T01:30:00Z")), "early Friday belongs to Thursday, which has none");
        assert_eq!(s.open_from(at("2026-12-05T03:00:00Z")), Some(at("2026-12-11T22:00:00Z")), "a week later");
    }

    #[test]
    fn equal_start_and_end_is_a_whole_day() {
        let s = schedule(&[window(&[Weekday::Sun], "00:00", "00:00", None)]);
        assert!(s.is_open(at("2026-12-06T00:00:00Z")));
        assert!(s.is_open(at("2026-12-06T23:59:59Z")));
        assert!(!s.is_open(at("2026-12-07T00:00:00Z")));
    }

    #[test]
    fn windows_follow_their_time_zone_and_its_daylight_saving_time() {
        let s = schedule(&[window(&[], "02:00", "03:00", Some("Europe/Berlin"))]);
        // Winter: UTC+1.
        assert!(s.is_open(at("2026-12-02T01:30:00Z")));
        assert!(!s.is_open(at("2026-12-02T02:30:00Z")));
        // Summer: UTC+2.
        assert!(s.is_open(at("2026-07-01T00:30:00Z")));
        // 2026-03-29 skips 02:00-03:00 in Berlin: the window is empty that day (02:00 resolves
        // to 03:00 and so does 03:00), and the next one is the day after.
        assert_eq!(s.open_from(at("2026-03-28T23:00:00Z")), Some(at("2026-03-30T00:00:00Z")));
    }

    #[test]
    fn the_earliest_of_several_windows_counts() {
        let s = schedule(&[
            window(&[Weekday::Sat, Weekday::Sun], "10:00", "12:00", None),
            window(&[Weekday::Wed], "20:00", "21:00", Some("America/New_York")),
        ]);
        // Wednesday 2026-12-02 20:00 in New York is 2026-12-03T01:00Z, before Saturday.
        assert_eq!(s.open_from(at("2026-12-02T12:00:00Z")), Some(at("2026-12-03T01:00:00Z")));
        assert_eq!(s.open_from(at("2026-12-03T02:00:00Z")), Some(at("2026-12-05T10:00:00Z")));
    }

    #[test]
    fn bad_zones_and_times_are_named() {
        let error =
            Schedule::parse(&[window(&[], "02:00", "03:00", None), window(&[], "1:00", "03:00", Some("Mars/Base"))])
                .unwrap_err();
        assert!(error.contains("windows[1]") && error.contains("Mars/Base"), "{error}");
        let error = Schedule::parse(&[window(&[], "24:00", "03:00", None)]).unwrap_err();
        assert!(error.contains("start \"24:00\""), "{error}");
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let s = schedule(&[window(&[Weekday::Mon], "02:00", "03:00", Some("Pacific/Kiritimati"))]);
        for t in [Timestamp::MIN, Timestamp::MAX, Timestamp::UNIX_EPOCH] {
            let _ = s.is_open(t);
            let _ = s.open_from(t);
            let _ = s.next_opening_after(t);
        }
    }
}

//! What an impossible-travel finding adds to each rendering: the two places, the
//! distance, the time between them and the speed it would take.

use std::fmt::Write as _;

use super::escape::ascii_line;
use super::{chat, chat_code, plain, shorten_front, ChatHeadline, RuleRendering};
use crate::finding::{Finding, ImpossibleTravel, TravelEndpoint};

impl ImpossibleTravel {
    fn kind(&self) -> &'static str {
        if self.concurrent_use {
            "Concurrent use"
        } else {
            "Impossible travel"
        }
    }

    fn ends(&self) -> [(&'static str, &TravelEndpoint); 2] {
        [
            ("From", &self.triggering_locations.first_location),
            ("To", &self.triggering_locations.second_location),
        ]
    }
}

impl RuleRendering for ImpossibleTravel {
    /// "Impossible travel: AKIA... Sydney -> Frankfurt am Main".
    fn subject(&self, finding: &Finding) -> String {
        let places = &self.triggering_locations;
        format!(
            "{}: {} {} -> {}",
            self.kind(),
            shorten_front(&ascii_line(&finding.subject), 40),
            short_place(&places.first_location),
            short_place(&places.second_location)
        )
    }

    fn text(&self, out: &mut String) {
        for (label, e) in self.ends() {
            let label = label.to_lowercase();
            let radius = e
                .accuracy_radius_km
                .map(|r| format!(" ±{r} km"))
                .unwrap_or_default();
            let asn = match (e.asn, &e.as_org) {
                (Some(n), Some(org)) => format!(" AS{n} {org}"),
                (Some(n), None) => format!(" AS{n}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {label:<4} {} {} ({}{radius}){asn}  {} {} in {}  event {}",
                e.event_time,
                e.ip,
                e.display_place(),
                e.event_source,
                e.event_name,
                e.aws_region,
                e.event_id
            );
        }
        let speed = self
            .speed_kmh
            .map(|s| format!("{s:.0} km/h"))
            .unwrap_or_else(|| "simultaneous".into());
        let _ = writeln!(
            out,
            "  distance {:.0} km (at least {:.0} km given the accuracy radii) in {}: {speed}",
            self.travel_distance, self.effective_distance_km, self.travel_time_human_readable
        );
    }

    fn email(&self, out: &mut String) {
        for (label, e) in self.ends() {
            let _ = writeln!(out, "{label}:");
            let _ = writeln!(out, "  Place:     {}", plain(&full_place(e)));
            let network = match (e.asn, &e.as_org) {
                (Some(n), Some(org)) => format!(" (AS{n} {})", plain(org)),
                (Some(n), None) => format!(" (AS{n})"),
                _ => String::new(),
            };
            let _ = writeln!(out, "  IP:        {}{network}", plain(&e.ip));
            if let Some(r) = e.accuracy_radius_km {
                let _ = writeln!(out, "  Accuracy:  within {r} km");
            }
            let _ = writeln!(out, "  Time:      {}", plain(&e.event_time));
            let _ = writeln!(
                out,
                "  Event:     {} {} in {} (event id {})",
                plain(&e.event_source),
                plain(&e.event_name),
                plain(&e.aws_region),
                plain(&e.event_id)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Distance:    {:.0} km (at least {:.0} km given the accuracy radii)",
            self.travel_distance, self.effective_distance_km
        );
        let _ = writeln!(
            out,
            "Time apart:  {}",
            plain(&self.travel_time_human_readable)
        );
        match self.speed_kmh {
            Some(speed) => {
                let _ = writeln!(out, "Speed:       {speed:.0} km/h");
            }
            None => {
                let _ = writeln!(out, "Speed:       both in the same second");
            }
        }
        if self.concurrent_use {
            let _ = writeln!(
                out,
                "Concurrent:  yes: two holders of one credential rather than one traveller"
            );
        }
        let _ = writeln!(out);
    }

    fn chat_headline(&self, finding: &Finding) -> ChatHeadline {
        let kind = self.kind();
        let places = &self.triggering_locations;
        let (a, b) = (
            chat(&places.first_location.display_place()),
            chat(&places.second_location.display_place()),
        );
        ChatHeadline {
            title: format!("{kind}: {} {a} → {b}", chat_code(&finding.subject)),
            summary: format!("{kind} of {}: {a} → {b}", chat(&finding.subject)),
        }
    }

    fn chat_description(&self, _finding: &Finding, d: &mut String) {
        let places = &self.triggering_locations;
        let speed = self.speed_kmh.map_or_else(
            || "both in the same second".to_owned(),
            |s| format!("{s:.0} km/h"),
        );
        let _ = writeln!(
            d,
            "*{}* → *{}*: {:.0} km apart (at least {:.0} km given the accuracy radii) in {}: {speed}.",
            chat(&places.first_location.display_place()),
            chat(&places.second_location.display_place()),
            self.travel_distance,
            self.effective_distance_km,
            chat(&self.travel_time_human_readable)
        );
        if self.concurrent_use {
            let _ = writeln!(
                d,
                "*Concurrent use*: two holders of one credential rather than one traveller."
            );
        }
        for (label, e) in self.ends() {
            let network = match (e.asn, &e.as_org) {
                (Some(n), Some(org)) => format!(" (AS{n} {})", chat(org)),
                (Some(n), None) => format!(" (AS{n})"),
                _ => String::new(),
            };
            let _ = writeln!(
                d,
                "• *{label}* {} {}{network} at {}: {} {} in {}",
                chat_code(&e.ip),
                chat(&full_place(e)),
                chat(&e.event_time),
                chat_code(&e.event_source),
                chat_code(&e.event_name),
                chat_code(&e.aws_region)
            );
        }
    }

    fn regions(&self) -> Vec<&str> {
        let places = &self.triggering_locations;
        vec![
            places.second_location.aws_region.as_str(),
            places.first_location.aws_region.as_str(),
        ]
    }
}

/// The most specific name the database has, as ASCII: for the subject line.
fn short_place(e: &TravelEndpoint) -> String {
    [
        e.city.as_deref(),
        e.country.as_deref(),
        e.country_code.as_deref(),
    ]
    .into_iter()
    .flatten()
    .map(ascii_line)
    .find(|s| !s.is_empty())
    .unwrap_or_else(|| "unknown".to_owned())
}

/// "Sydney, New South Wales, Australia (AU)", with what the database knows.
fn full_place(e: &TravelEndpoint) -> String {
    let mut parts: Vec<&str> = [
        e.city.as_deref(),
        e.subdivision.as_deref(),
        e.country.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        parts.push("unknown place");
    }
    let mut place = parts.join(", ");
    if let Some(code) = &e.country_code {
        let _ = write!(place, " ({code})");
    }
    place
}

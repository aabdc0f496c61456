//! What the account-level rules add: the unusual calls with their evidence (where the
//! call usually comes from, how often an error was seen), and the long-term key's use.
//! Every field here is log or GeoIP text, so each body escapes it.

use std::fmt::Write as _;

use super::{chat, chat_code, plain, RuleRendering};
use crate::finding::{
    CallRef, Finding, LongTermAccessKeyAuth, UnusualCityForCommand, UnusualErrorCode,
};

/// Calls shown in chat; the email and the JSON list more.
const MAX_CHAT_CALLS: usize = 5;

fn call_line(c: &CallRef, esc: fn(&str) -> String) -> String {
    let mut line = format!(
        "{}  {}  {} {} in {}  (event {})",
        esc(&c.event_time),
        esc(&c.source_ip_address),
        esc(&c.event_source),
        esc(&c.event_name),
        esc(&c.aws_region),
        esc(&c.event_id)
    );
    if let Some(code) = &c.error_code {
        let _ = write!(line, "  error {}", esc(code));
    }
    line
}

fn same(s: &str) -> String {
    s.to_owned()
}

fn regions(calls: &[CallRef]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in calls {
        if !out.contains(&c.aws_region.as_str()) {
            out.push(&c.aws_region);
        }
    }
    out
}

fn chat_calls(calls: &[CallRef], d: &mut String) {
    for c in calls.iter().take(MAX_CHAT_CALLS) {
        let _ = writeln!(
            d,
            "{} {} from {}",
            chat_code(&c.event_time),
            chat_code(&format!("{}:{}", c.event_source, c.event_name)),
            chat_code(&c.source_ip_address)
        );
    }
    if calls.len() > MAX_CHAT_CALLS {
        let _ = writeln!(d, "and {} more", calls.len() - MAX_CHAT_CALLS);
    }
}

impl RuleRendering for UnusualCityForCommand {
    fn text(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  from {} (lookback {} days, rare below {} sighting(s))",
            self.place.name, self.lookback_days, self.min_seen
        );
        for c in &self.commands {
            let usual: Vec<String> = c
                .usual_places
                .iter()
                .map(|p| format!("{} ({})", p.place, p.count))
                .collect();
            let _ = writeln!(
                out,
                "  call {} {}: {} from here now, {} before; {} in the account{}",
                c.event_source,
                c.event_name,
                c.calls_from_city,
                c.seen_from_city_before,
                c.seen_in_account,
                if usual.is_empty() {
                    String::new()
                } else {
                    format!(", usually from {}", usual.join(", "))
                }
            );
        }
        for c in &self.calls {
            let _ = writeln!(out, "  at   {}", call_line(c, same));
        }
    }

    fn email(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "City: {}\nLookback: {} days; rare below {} sighting(s)",
            plain(&self.place.name),
            self.lookback_days,
            self.min_seen
        );
        for c in &self.commands {
            let _ = writeln!(
                out,
                "Call {} {}: {} now from this city, {} before; {} in the account",
                plain(&c.event_source),
                plain(&c.event_name),
                c.calls_from_city,
                c.seen_from_city_before,
                c.seen_in_account
            );
            for p in &c.usual_places {
                let _ = writeln!(
                    out,
                    "  usually from {}: {} call(s), last {}",
                    plain(&p.place),
                    p.count,
                    plain(p.last_seen.as_deref().unwrap_or("-"))
                );
            }
        }
        let _ = writeln!(out, "Calls:");
        for c in &self.calls {
            let _ = writeln!(out, "  {}", call_line(c, plain));
        }
        let _ = writeln!(out);
    }

    fn chat_description(&self, finding: &Finding, d: &mut String) {
        let _ = writeln!(d, "{}", chat(&finding.summary));
        chat_calls(&self.calls, d);
    }

    fn regions(&self) -> Vec<&str> {
        regions(&self.calls)
    }
}

impl RuleRendering for UnusualErrorCode {
    fn text(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  error {}: {} before on {} day(s) in {} days{}",
            self.error_code,
            self.seen_before,
            self.days_seen,
            self.lookback_days,
            self.first_seen
                .as_deref()
                .map(|f| format!(", first {f}"))
                .unwrap_or_default()
        );
        for c in &self.calls {
            let _ = writeln!(out, "  at   {}", call_line(c, same));
        }
    }

    fn email(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Error code: {}\nSeen before: {} time(s) on {} day(s) in the last {} days\nFirst seen: {}\nLast seen: {}",
            plain(&self.error_code),
            self.seen_before,
            self.days_seen,
            self.lookback_days,
            plain(self.first_seen.as_deref().unwrap_or("never")),
            plain(self.last_seen.as_deref().unwrap_or("never")),
        );
        let _ = writeln!(out, "Calls:");
        for c in &self.calls {
            let _ = writeln!(out, "  {}", call_line(c, plain));
            if let Some(m) = &c.error_message {
                let _ = writeln!(out, "    {}", plain(m));
            }
        }
        let _ = writeln!(out);
    }

    fn chat_description(&self, finding: &Finding, d: &mut String) {
        let _ = writeln!(d, "{}", chat(&finding.summary));
        chat_calls(&self.calls, d);
    }

    fn regions(&self) -> Vec<&str> {
        regions(&self.calls)
    }
}

impl RuleRendering for LongTermAccessKeyAuth {
    fn text(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  key {} from {}{}: {} (within {} days); {} call(s) in {} minutes",
            self.access_key_id,
            self.source_ip_address,
            self.place
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            if self.new_address {
                "new address"
            } else {
                "known address"
            },
            self.new_address_days,
            self.calls_in_window,
            self.dedup_minutes
        );
        if !self.known_addresses.is_empty() {
            let _ = writeln!(out, "  also used from {}", self.known_addresses.join(", "));
        }
        for c in &self.calls {
            let _ = writeln!(out, "  at   {}", call_line(c, same));
        }
    }

    fn email(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Access key: {}\nSource address: {}{}\nNew address (not used in {} days): {}\nLast use from it: {}\nOther addresses: {}",
            plain(&self.access_key_id),
            plain(&self.source_ip_address),
            self.place
                .as_deref()
                .map(|p| format!(" ({})", plain(p)))
                .unwrap_or_default(),
            self.new_address_days,
            if self.new_address { "yes" } else { "no" },
            plain(self.address_last_seen.as_deref().unwrap_or("-")),
            plain(&self.known_addresses.join(", ")),
        );
        for c in &self.calls {
            let _ = writeln!(out, "  {}", call_line(c, plain));
        }
        let _ = writeln!(out);
    }

    fn chat_description(&self, finding: &Finding, d: &mut String) {
        let _ = writeln!(d, "{}", chat(&finding.summary));
    }

    fn regions(&self) -> Vec<&str> {
        regions(&self.calls)
    }
}

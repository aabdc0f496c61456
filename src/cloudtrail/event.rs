//! The fields geotrail uses from one CloudTrail record, borrowed from the record's bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::error::quote;
use super::time::parse_event_time;

/// The fields geotrail uses from one CloudTrail record.
///
/// Strings borrow from the record's bytes unless they contain JSON escapes, so a record
/// costs no allocation in the common case. Every other field of the record is skipped.
/// `null` and a missing key both read as `None`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event<'a> {
    /// `eventTime` as Unix epoch milliseconds, UTC. Required: a record without a
    /// parsable `eventTime` is a [`RecordError`](super::RecordError).
    #[serde(rename = "eventTime", deserialize_with = "event_time")]
    pub event_time_ms: i64,
    #[serde(rename = "eventID", default, borrow, deserialize_with = "opt_str")]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(rename = "eventName", default, borrow, deserialize_with = "opt_str")]
    pub event_name: Option<Cow<'a, str>>,
    #[serde(rename = "eventSource", default, borrow, deserialize_with = "opt_str")]
    pub event_source: Option<Cow<'a, str>>,
    #[serde(rename = "eventType", default, borrow, deserialize_with = "opt_str")]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(rename = "awsRegion", default, borrow, deserialize_with = "opt_str")]
    pub aws_region: Option<Cow<'a, str>>,
    #[serde(
        rename = "sourceIPAddress",
        default,
        borrow,
        deserialize_with = "opt_str"
    )]
    pub source_ip_address: Option<Cow<'a, str>>,
    #[serde(rename = "userAgent", default, borrow, deserialize_with = "opt_str")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(rename = "errorCode", default, borrow, deserialize_with = "opt_str")]
    pub error_code: Option<Cow<'a, str>>,
    #[serde(rename = "errorMessage", default, borrow, deserialize_with = "opt_str")]
    pub error_message: Option<Cow<'a, str>>,
    #[serde(
        rename = "recipientAccountId",
        default,
        borrow,
        deserialize_with = "opt_str"
    )]
    pub recipient_account_id: Option<Cow<'a, str>>,
    #[serde(rename = "userIdentity", default, borrow)]
    pub user_identity: Option<UserIdentity<'a>>,
}

/// Records that carry a CloudTrail event inside another document: an item of
/// `aws cloudtrail lookup-events` (`CloudTrailEvent`, the event as a JSON string) and
/// Panther's test cases (`log`, the event as an object).
#[derive(Deserialize)]
struct Wrapped<'a> {
    #[serde(rename = "CloudTrailEvent", default, borrow)]
    cloudtrail_event: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    log: Option<Event<'a>>,
}

impl Wrapped<'_> {
    fn unwrap(bytes: &[u8]) -> Option<Event<'_>> {
        let wrapped: Wrapped<'_> = serde_json::from_slice(bytes).ok()?;
        if let Some(event) = wrapped.log {
            return Some(event);
        }
        let inner = wrapped.cloudtrail_event?;
        let inner = inner.trim_start();
        if !inner.starts_with('{') {
            return None;
        }
        // The string was unescaped into a buffer of its own, so the event is copied out.
        serde_json::from_str::<Event<'_>>(inner)
            .ok()
            .map(Event::into_owned)
    }
}

/// `userIdentity`: who made the call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct UserIdentity<'a> {
    /// JSON `type`: `IAMUser`, `AssumedRole`, `Root`, `AWSService`, ...
    #[serde(rename = "type", default, borrow, deserialize_with = "opt_str")]
    pub identity_type: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    pub arn: Option<Cow<'a, str>>,
    #[serde(rename = "accountId", default, borrow, deserialize_with = "opt_str")]
    pub account_id: Option<Cow<'a, str>>,
    #[serde(rename = "accessKeyId", default, borrow, deserialize_with = "opt_str")]
    pub access_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "userName", default, borrow, deserialize_with = "opt_str")]
    pub user_name: Option<Cow<'a, str>>,
    #[serde(rename = "principalId", default, borrow, deserialize_with = "opt_str")]
    pub principal_id: Option<Cow<'a, str>>,
    #[serde(rename = "invokedBy", default, borrow, deserialize_with = "opt_str")]
    pub invoked_by: Option<Cow<'a, str>>,
    /// `sessionContext.sessionIssuer`: the role or user whose credentials the session
    /// came from. `None` when absent or `{}` (IAM users get an empty one).
    #[serde(
        rename = "sessionContext",
        default,
        borrow,
        deserialize_with = "session_issuer"
    )]
    pub session_issuer: Option<SessionIssuer<'a>>,
}

/// `userIdentity.sessionContext.sessionIssuer`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SessionIssuer<'a> {
    /// JSON `type`: `Role`, `IAMUser`, `Root`, ...
    #[serde(rename = "type", default, borrow, deserialize_with = "opt_str")]
    pub issuer_type: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "opt_str")]
    pub arn: Option<Cow<'a, str>>,
    #[serde(rename = "userName", default, borrow, deserialize_with = "opt_str")]
    pub user_name: Option<Cow<'a, str>>,
    #[serde(rename = "accountId", default, borrow, deserialize_with = "opt_str")]
    pub account_id: Option<Cow<'a, str>>,
    #[serde(rename = "principalId", default, borrow, deserialize_with = "opt_str")]
    pub principal_id: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// Deserializes one record's bytes (a single JSON value, nothing around it).
    pub(crate) fn from_json(bytes: &[u8]) -> Result<Event<'_>, serde_json::Error> {
        // Validated as UTF-8 once, in bulk: then neither path checks each string on its
        // own, which cost more than the whole record's check.
        let text = std::str::from_utf8(bytes).ok();
        if let Some(event) = text.and_then(super::fields::read) {
            return Ok(event);
        }
        Event::by_serde(bytes, text)
    }

    /// serde's reading of a record: what [`super::fields`] gives way to, and the
    /// reference it is tested against. `text` is `bytes` when they are valid UTF-8.
    pub(crate) fn by_serde<'a>(
        bytes: &'a [u8],
        text: Option<&'a str>,
    ) -> Result<Event<'a>, serde_json::Error> {
        // serde's derive would also take an array, filling fields by position.
        if bytes.first() == Some(&b'[') {
            return Err(de::Error::invalid_type(
                de::Unexpected::Seq,
                &"a record object",
            ));
        }
        // A record that is not valid UTF-8 throughout is still read as bytes: only the
        // fields kept must be valid then.
        let parsed = match text {
            Some(text) => serde_json::from_str(text),
            None => serde_json::from_slice(bytes),
        };
        match parsed {
            Ok(event) => Ok(event),
            // Only a record that is not a plain event pays for the second attempt.
            Err(err) => Wrapped::unwrap(bytes).ok_or(err),
        }
    }

    /// Copies every borrowed string, for callers that keep events past the record.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            event_time_ms: self.event_time_ms,
            event_id: owned(self.event_id),
            event_name: owned(self.event_name),
            event_source: owned(self.event_source),
            event_type: owned(self.event_type),
            aws_region: owned(self.aws_region),
            source_ip_address: owned(self.source_ip_address),
            user_agent: owned(self.user_agent),
            error_code: owned(self.error_code),
            error_message: owned(self.error_message),
            recipient_account_id: owned(self.recipient_account_id),
            user_identity: self.user_identity.map(UserIdentity::into_owned),
        }
    }
}

impl UserIdentity<'_> {
    /// Copies every borrowed string.
    pub fn into_owned(self) -> UserIdentity<'static> {
        UserIdentity {
            identity_type: owned(self.identity_type),
            arn: owned(self.arn),
            account_id: owned(self.account_id),
            access_key_id: owned(self.access_key_id),
            user_name: owned(self.user_name),
            principal_id: owned(self.principal_id),
            invoked_by: owned(self.invoked_by),
            session_issuer: self.session_issuer.map(SessionIssuer::into_owned),
        }
    }
}

impl SessionIssuer<'_> {
    /// Copies every borrowed string.
    pub fn into_owned(self) -> SessionIssuer<'static> {
        SessionIssuer {
            issuer_type: owned(self.issuer_type),
            arn: owned(self.arn),
            user_name: owned(self.user_name),
            account_id: owned(self.account_id),
            principal_id: owned(self.principal_id),
        }
    }

    fn is_empty(&self) -> bool {
        self == &SessionIssuer::default()
    }
}

fn owned(s: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    s.map(|s| Cow::Owned(s.into_owned()))
}

/// serde's own `Cow` impl always allocates, and `#[serde(borrow)]` only borrows a bare
/// `Cow<str>` field, not one inside an `Option`; this borrows whenever the input allows.
fn opt_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct OptStr;
    impl<'de> Visitor<'de> for OptStr {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(CowStr).map(Some)
        }
    }
    d.deserialize_option(OptStr)
}

struct CowStr;

impl<'de> Visitor<'de> for CowStr {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

fn event_time<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct EventTime;
    impl Visitor<'_> for EventTime {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an RFC 3339 timestamp string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            parse_event_time(v).ok_or_else(|| {
                E::custom(format_args!(
                    "eventTime {} is not an RFC 3339 timestamp",
                    quote(v)
                ))
            })
        }
    }
    d.deserialize_str(EventTime)
}

fn session_issuer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SessionIssuer<'de>>, D::Error> {
    #[derive(Deserialize)]
    struct SessionContext<'a> {
        #[serde(rename = "sessionIssuer", default, borrow)]
        session_issuer: Option<SessionIssuer<'a>>,
    }
    let context = Option::<SessionContext<'de>>::deserialize(d)?;
    Ok(context
        .and_then(|c| c.session_issuer)
        .filter(|issuer| !issuer.is_empty()))
}

#[cfg(test)]
mod tests {

    #[test]
    fn lookup_events_items_and_panther_cases_unwrap_to_their_event() {
        let inner = r#"{\"eventTime\":\"2022-02-07T22:23:37Z\",\"eventID\":\"e1\",\"sourceIPAddress\":\"1.2.3.4\",\"userIdentity\":{\"accessKeyId\":\"AKIAX\"}}"#;
        let cases = [
            ("lookup-events item", format!(r#"{{"EventId":"e1","EventTime":"2022-02-08 09:23:37+11:00","CloudTrailEvent":"{inner}"}}"#)),
            ("panther test case", r#"{"rule_id":"x","log":{"eventTime":"2022-02-07 22:23:37","eventID":"e1","sourceIPAddress":"1.2.3.4","userIdentity":{"accessKeyId":"AKIAX"}}}"#.to_owned()),
        ];
        for (case, json) in cases {
            let event = Event::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(event.event_time_ms, 1_644_272_617_000, "{case}");
            assert_eq!(event.event_id.as_deref(), Some("e1"), "{case}");
            assert_eq!(
                event.user_identity.unwrap().access_key_id.as_deref(),
                Some("AKIAX"),
                "{case}"
            );
        }
        let err =
            Event::from_json(br#"{"CloudTrailEvent":"not json","EventId":"e1"}"#).unwrap_err();
        assert!(
            err.to_string().contains("eventTime"),
            "the original error is kept: {err}"
        );
    }

    use super::*;

    fn is_borrowed(s: &Option<Cow<'_, str>>) -> bool {
        matches!(s, Some(Cow::Borrowed(_)))
    }

    #[test]
    fn reads_every_field_and_borrows_unescaped_strings() {
        let json = br#"{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole",
            "principalId":"AROA:me","arn":"arn:aws:sts::1:assumed-role/R/me","accountId":"1",
            "accessKeyId":"ASIAX","userName":"me","invokedBy":"svc","sessionContext":{
            "sessionIssuer":{"type":"Role","principalId":"AROA","arn":"arn:aws:iam::1:role/R",
            "accountId":"1","userName":"R"},"attributes":{"mfaAuthenticated":"false"}}},
            "eventTime":"2023-07-10T11:40:12Z","eventSource":"s3.amazonaws.com",
            "eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.1",
            "userAgent":"aws-cli","errorCode":"AccessDenied","errorMessage":"no",
            "requestParameters":{"a":[1,2,{"b":null}]},"eventID":"e-1","eventType":"AwsApiCall",
            "recipientAccountId":"2"}"#;
        let event = Event::from_json(json).expect("valid record");
        let identity = event.user_identity.as_ref().expect("userIdentity");
        let issuer = identity.session_issuer.as_ref().expect("sessionIssuer");
        assert_eq!(event.event_time_ms, 1_688_989_212_000);
        assert_eq!(event.event_id.as_deref(), Some("e-1"));
        assert_eq!(event.event_name.as_deref(), Some("GetObject"));
        assert_eq!(event.event_source.as_deref(), Some("s3.amazonaws.com"));
        assert_eq!(event.event_type.as_deref(), Some("AwsApiCall"));
        assert_eq!(event.aws_region.as_deref(), Some("us-east-1"));
        assert_eq!(event.source_ip_address.as_deref(), Some("192.0.2.1"));
        assert_eq!(event.user_agent.as_deref(), Some("aws-cli"));
        assert_eq!(event.error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(event.error_message.as_deref(), Some("no"));
        assert_eq!(event.recipient_account_id.as_deref(), Some("2"));
        assert_eq!(identity.identity_type.as_deref(), Some("AssumedRole"));
        assert_eq!(
            identity.arn.as_deref(),
            Some("arn:aws:sts::1:assumed-role/R/me")
        );
        assert_eq!(identity.account_id.as_deref(), Some("1"));
        assert_eq!(identity.access_key_id.as_deref(), Some("ASIAX"));
        assert_eq!(identity.user_name.as_deref(), Some("me"));
        assert_eq!(identity.principal_id.as_deref(), Some("AROA:me"));
        assert_eq!(identity.invoked_by.as_deref(), Some("svc"));
        assert_eq!(issuer.issuer_type.as_deref(), Some("Role"));
        assert_eq!(issuer.arn.as_deref(), Some("arn:aws:iam::1:role/R"));
        assert_eq!(issuer.user_name.as_deref(), Some("R"));
        assert_eq!(issuer.account_id.as_deref(), Some("1"));
        assert_eq!(issuer.principal_id.as_deref(), Some("AROA"));
        assert!(is_borrowed(&event.event_name), "plain strings borrow");
        assert!(
            is_borrowed(&identity.access_key_id),
            "nested strings borrow"
        );
        assert!(is_borrowed(&issuer.arn), "issuer strings borrow");
    }

    #[test]
    fn decodes_escaped_strings_into_owned_values() {
        let json =
            br#"{"eventTime":"2023-07-10T11:40:12Z","userAgent":"say \"hi\" caf\u00e9 \\ \/",
            "errorMessage":"line\nbreak \ud83d\ude00"}"#;
        let event = Event::from_json(json).expect("valid record");
        assert_eq!(event.user_agent.as_deref(), Some("say \"hi\" café \\ /"));
        assert_eq!(event.error_message.as_deref(), Some("line\nbreak 😀"));
        assert!(
            matches!(event.user_agent, Some(Cow::Owned(_))),
            "escapes force a copy"
        );
    }

    #[test]
    fn reads_null_and_missing_optional_fields_as_none() {
        let cases: &[(&str, &str)] = &[
            ("all missing", r#"{"eventTime":"2023-07-10T11:40:12Z"}"#),
            (
                "all null",
                r#"{"eventTime":"2023-07-10T11:40:12Z","userIdentity":null,"eventName":null,
                "sourceIPAddress":null,"eventID":null,"recipientAccountId":null}"#,
            ),
        ];
        for (case, json) in cases {
            let event =
                Event::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("case {case}: {e}"));
            assert_eq!(event.user_identity, None, "case {case}");
            assert_eq!(event.event_name, None, "case {case}");
            assert_eq!(event.source_ip_address, None, "case {case}");
        }
    }

    #[test]
    fn empty_or_null_session_issuer_reads_as_none() {
        let cases: &[(&str, &str)] = &[
            ("no sessionContext", r#"{"type":"IAMUser"}"#),
            (
                "null sessionContext",
                r#"{"type":"IAMUser","sessionContext":null}"#,
            ),
            (
                "no sessionIssuer",
                r#"{"type":"IAMUser","sessionContext":{"attributes":{}}}"#,
            ),
            (
                "null sessionIssuer",
                r#"{"type":"IAMUser","sessionContext":{"sessionIssuer":null}}"#,
            ),
            (
                "empty sessionIssuer",
                r#"{"type":"IAMUser","sessionContext":{"sessionIssuer":{}}}"#,
            ),
        ];
        for (case, identity) in cases {
            let json =
                format!(r#"{{"eventTime":"2023-07-10T11:40:12Z","userIdentity":{identity}}}"#);
            let event =
                Event::from_json(json.as_bytes()).unwrap_or_else(|e| panic!("case {case}: {e}"));
            let identity = event.user_identity.expect(case);
            assert_eq!(
                identity.identity_type.as_deref(),
                Some("IAMUser"),
                "case {case}"
            );
            assert_eq!(identity.session_issuer, None, "case {case}");
        }
    }

    #[test]
    fn rejects_records_with_wrong_types_or_no_event_time() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "missing eventTime",
                r#"{"eventName":"x"}"#,
                "missing field `eventTime`",
            ),
            ("null eventTime", r#"{"eventTime":null}"#, "RFC 3339"),
            ("numeric eventTime", r#"{"eventTime":5}"#, "RFC 3339"),
            (
                "bad eventTime",
                r#"{"eventTime":"2023-02-30T00:00:00Z"}"#,
                "2023-02-30",
            ),
            (
                "string userIdentity",
                r#"{"eventTime":"2023-07-10T11:40:12Z","userIdentity":"x"}"#,
                "struct UserIdentity",
            ),
            (
                "numeric eventName",
                r#"{"eventTime":"2023-07-10T11:40:12Z","eventName":7}"#,
                "a string",
            ),
            ("array record", r#"[1,2]"#, "expected a record object"),
            (
                "positional array record",
                r#"["2023-07-10T11:40:12Z"]"#,
                "expected a record object",
            ),
            (
                "duplicate eventTime",
                r#"{"eventTime":"2023-07-10T11:40:12Z","eventTime":"2023-07-10T11:40:12Z"}"#,
                "duplicate field",
            ),
        ];
        for (case, json, want) in cases {
            let err = Event::from_json(json.as_bytes())
                .expect_err(case)
                .to_string();
            assert!(
                err.contains(want),
                "case {case}: {err:?} should mention {want:?}"
            );
        }
    }

    #[test]
    fn into_owned_keeps_every_value() {
        let json = br#"{"eventTime":"2023-07-10T11:40:12Z","eventName":"A","userIdentity":{
            "arn":"x","sessionContext":{"sessionIssuer":{"arn":"y"}}}}"#;
        let event = Event::from_json(json).expect("valid record");
        let owned: Event<'static> = event.clone().into_owned();
        assert_eq!(owned, event);
    }
}

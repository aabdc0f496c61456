//! What invokes the function, decoded into the S3 objects to read.
//!
//! One payload type, [`Invocation`], takes every shape the function is wired to, because
//! the shapes share no tag to dispatch on before parsing:
//!
//! - an S3 event notification, invoked directly (`Records[].s3`);
//! - an SQS batch (`Records[].body`), each body being an S3 event notification, an SNS
//!   envelope around one (or around CloudTrail's own notification), CloudTrail's
//!   notification delivered raw, or an EventBridge event;
//! - an SNS invocation (`Records[].Sns.Message`);
//! - an EventBridge "Object Created" event (`detail.bucket.name`, `detail.object.key`).
//!
//! The structs are our own, with every field optional, rather than `aws_lambda_events`'
//! S3 types: those require fields (`userIdentity`, `requestParameters`, `eventTime`) that
//! only matter to other consumers and that emulators and S3-compatible stores leave out,
//! and a missing one would fail the whole batch before a line of ours ran.

use serde::Deserialize;

/// The payload of one invocation, any shape (see the module documentation).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Invocation {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
    /// EventBridge.
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
    #[serde(default)]
    detail: Option<EventBridgeDetail>,
    /// S3's `s3:TestEvent`, sent when a notification configuration is saved.
    #[serde(rename = "Event", default)]
    s3_test_event: Option<String>,
    /// An SNS envelope, as SQS receives it without raw message delivery.
    #[serde(rename = "Type", default)]
    sns_type: Option<String>,
    #[serde(rename = "Message", default)]
    sns_message: Option<String>,
    /// CloudTrail's notification of a delivered log file.
    #[serde(rename = "s3Bucket", default)]
    cloudtrail_bucket: Option<String>,
    #[serde(rename = "s3ObjectKey", default)]
    cloudtrail_keys: Option<Vec<String>>,
}

/// A record of an S3, SQS or SNS event: the fields of all three, each optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// `aws:s3`, `aws:sqs`; SNS spells it `EventSource`: `aws:sns`.
    #[serde(alias = "EventSource", default)]
    event_source: Option<String>,
    // S3
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    s3: Option<S3Entity>,
    // SQS
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    body: Option<String>,
    // SNS
    #[serde(rename = "Sns", default)]
    sns: Option<SnsEntity>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct S3Entity {
    #[serde(default)]
    bucket: Option<Named>,
    #[serde(default)]
    object: Option<KeyEntity>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct KeyEntity {
    #[serde(default)]
    key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SnsEntity {
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct EventBridgeDetail {
    #[serde(default)]
    bucket: Option<Named>,
    #[serde(default)]
    object: Option<KeyEntity>,
}

/// An S3 object to read, its key decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Why a notification names no object to read; counted, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ignored {
    /// `s3:TestEvent`, sent when a bucket's notifications are configured.
    S3TestEvent,
    /// Deletions, restores, tagging and the rest: nothing new to read.
    NotObjectCreated,
    /// An SNS envelope that is not a `Notification` (subscription confirmations).
    NotSnsNotification,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::S3TestEvent => "s3_test_event",
            Ignored::NotObjectCreated => "not_object_created",
            Ignored::NotSnsNotification => "not_sns_notification",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{what} is not JSON of a known shape: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} has no {missing}")]
    Incomplete {
        what: &'static str,
        missing: &'static str,
    },
    #[error("S3 object key {key:?} is not form-URL-encoded: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error("{what} is not an S3, SNS, CloudTrail or EventBridge notification")]
    Unrecognized { what: &'static str },
    #[error("{what} nests notifications deeper than SQS -> SNS -> S3")]
    TooDeep { what: &'static str },
}

/// One unit that succeeds or fails as a whole: an SQS message, or a direct invocation.
#[derive(Debug)]
pub struct Delivery {
    /// The SQS message id; `None` for a direct invocation.
    pub message_id: Option<String>,
    pub content: Result<Notification, EventError>,
}

/// The objects a delivery names, and what it named that is not worth reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notification {
    pub objects: Vec<ObjectRef>,
    pub ignored: Vec<Ignored>,
}

/// An invocation, decoded.
#[derive(Debug)]
pub struct Decoded {
    /// An SQS batch: the response must list the failed message ids.
    pub from_sqs: bool,
    pub deliveries: Vec<Delivery>,
}

/// SQS -> SNS -> S3 is the deepest legitimate nesting.
const MAX_DEPTH: u8 = 3;

impl Invocation {
    pub fn decode(self) -> Decoded {
        let from_sqs = self
            .records
            .iter()
            .any(|r| r.event_source.as_deref() == Some("aws:sqs"));
        if !from_sqs {
            let content = decode_payload(self, "invocation payload", 0);
            return Decoded {
                from_sqs,
                deliveries: vec![Delivery {
                    message_id: None,
                    content,
                }],
            };
        }
        let deliveries = self
            .records
            .into_iter()
            .map(|record| {
                let content = match (record.event_source.as_deref(), record.body) {
                    (Some("aws:sqs"), Some(body)) => decode_json(&body, "SQS message body", 1),
                    (Some("aws:sqs"), None) => Err(EventError::Incomplete {
                        what: "SQS message",
                        missing: "body",
                    }),
                    _ => Err(EventError::Unrecognized {
                        what: "a record of an SQS batch",
                    }),
                };
                Delivery {
                    message_id: record.message_id,
                    content,
                }
            })
            .collect();
        Decoded {
            from_sqs,
            deliveries,
        }
    }
}

fn decode_json(text: &str, what: &'static str, depth: u8) -> Result<Notification, EventError> {
    if depth >= MAX_DEPTH {
        return Err(EventError::TooDeep { what });
    }
    let payload: Invocation =
        serde_json::from_str(text).map_err(|source| EventError::Json { what, source })?;
    decode_payload(payload, what, depth)
}

fn decode_payload(
    payload: Invocation,
    what: &'static str,
    depth: u8,
) -> Result<Notification, EventError> {
    let mut out = Notification::default();
    if payload.s3_test_event.as_deref() == Some("s3:TestEvent") {
        out.ignored.push(Ignored::S3TestEvent);
        return Ok(out);
    }
    if !payload.records.is_empty() {
        for record in payload.records {
            decode_record(record, depth, &mut out)?;
        }
        return Ok(out);
    }
    if let Some(detail_type) = payload.detail_type {
        // EventBridge's S3 events carry the key as stored, not URL-encoded.
        if detail_type != "Object Created" {
            out.ignored.push(Ignored::NotObjectCreated);
            return Ok(out);
        }
        let what = "EventBridge Object Created event";
        let detail = payload.detail.ok_or(EventError::Incomplete {
            what,
            missing: "detail",
        })?;
        let bucket = detail.bucket.and_then(|b| b.name);
        let key = detail.object.and_then(|o| o.key);
        out.objects.push(object_ref(what, bucket, key)?);
        return Ok(out);
    }
    if let Some(bucket) = payload.cloudtrail_bucket {
        // CloudTrail names its own objects; the keys are as stored.
        let keys = payload.cloudtrail_keys.ok_or(EventError::Incomplete {
            what: "CloudTrail notification",
            missing: "s3ObjectKey",
        })?;
        for key in keys {
            out.objects.push(object_ref(
                "CloudTrail notification",
                Some(bucket.clone()),
                Some(key),
            )?);
        }
        return Ok(out);
    }
    if let Some(kind) = payload.sns_type {
        if kind != "Notification" {
            out.ignored.push(Ignored::NotSnsNotification);
            return Ok(out);
        }
        let message = payload.sns_message.ok_or(EventError::Incomplete {
            what: "SNS notification",
            missing: "Message",
        })?;
        return decode_json(&message, "SNS message", depth + 1);
    }
    Err(EventError::Unrecognized { what })
}

fn decode_record(record: Record, depth: u8, out: &mut Notification) -> Result<(), EventError> {
    match record.event_source.as_deref() {
        Some("aws:sns") => {
            let message = record
                .sns
                .and_then(|s| s.message)
                .ok_or(EventError::Incomplete {
                    what: "SNS record",
                    missing: "Sns.Message",
                })?;
            let inner = decode_json(&message, "SNS message", depth + 1)?;
            out.objects.extend(inner.objects);
            out.ignored.extend(inner.ignored);
            Ok(())
        }
        // S3 notifications say `aws:s3`; some S3-compatible stores leave it out.
        Some("aws:s3") | None if record.s3.is_some() => {
            let what = "S3 event record";
            // `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`, ...; the
            // `s3:` prefix appears in configurations and in some emulators' events.
            let name = record.event_name.as_deref().unwrap_or("");
            if !name.trim_start_matches("s3:").starts_with("ObjectCreated:") {
                out.ignored.push(Ignored::NotObjectCreated);
                return Ok(());
            }
            let s3 = record.s3.unwrap_or_default();
            let bucket = s3.bucket.and_then(|b| b.name);
            let key = s3
                .object
                .and_then(|o| o.key)
                .map(|k| decode_form_key(&k))
                .transpose()?;
            out.objects.push(object_ref(what, bucket, key)?);
            Ok(())
        }
        _ => Err(EventError::Unrecognized { what: "a record" }),
    }
}

fn object_ref(
    what: &'static str,
    bucket: Option<String>,
    key: Option<String>,
) -> Result<ObjectRef, EventError> {
    let bucket = bucket
        .filter(|b| !b.is_empty())
        .ok_or(EventError::Incomplete {
            what,
            missing: "bucket name",
        })?;
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or(EventError::Incomplete {
            what,
            missing: "object key",
        })?;
    Ok(ObjectRef { bucket, key })
}

/// Decodes a key as S3 notifications write it: form-URL-encoded, `+` for a space.
pub fn decode_form_key(key: &str) -> Result<String, EventError> {
    let bad = |reason| EventError::BadKey {
        key: key.to_owned(),
        reason,
    };
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or_else(|| bad("a % without two hex digits"))?;
                let hex =
                    std::str::from_utf8(hex).map_err(|_| bad("a % without two hex digits"))?;
                out.push(
                    u8::from_str_radix(hex, 16).map_err(|_| bad("a % without two hex digits"))?,
                );
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad("it decodes to bytes that are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Decoded {
        serde_json::from_str::<Invocation>(json)
            .expect("payload parses")
            .decode()
    }

    fn direct(json: &str) -> Result<Notification, EventError> {
        let mut d = decode(json);
        assert!(!d.from_sqs);
        assert_eq!(d.deliveries.len(), 1);
        d.deliveries.remove(0).content
    }

    fn objects(pairs: &[(&str, &str)]) -> Vec<ObjectRef> {
        pairs.iter().map(|(b, k)| ObjectRef::new(*b, *k)).collect()
    }

    /// An S3 notification as S3 writes it (abridged: the fields we do not read are out).
    fn s3_event(event_name: &str, bucket: &str, key: &str) -> String {
        format!(
            r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
            "eventTime":"2025-01-01T00:00:00.000Z","eventName":"{event_name}",
            "s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},
            "object":{{"key":"{key}","size":1024}}}}}}]}}"#
        )
    }

    fn sqs_batch(bodies: &[(&str, &str)]) -> String {
        let records: Vec<String> = bodies
            .iter()
            .map(|(id, body)| {
                format!(
                    r#"{{"messageId":"{id}","receiptHandle":"rh","body":{},"attributes":{{}},
                    "messageAttributes":{{}},"eventSource":"aws:sqs","awsRegion":"us-east-1"}}"#,
                    serde_json::to_string(body).unwrap()
                )
            })
            .collect();
        format!(r#"{{"Records":[{}]}}"#, records.join(","))
    }

    fn sns_envelope(message: &str) -> String {
        format!(
            r#"{{"Type":"Notification","MessageId":"m","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":{}}}"#,
            serde_json::to_string(message).unwrap()
        )
    }

    #[test]
    fn form_encoded_keys_are_decoded() {
        let cases = [
            (
                "AWSLogs/1/CloudTrail/a.json.gz",
                "AWSLogs/1/CloudTrail/a.json.gz",
            ),
            ("logs%2Fa+b.log.gz", "logs/a b.log.gz"),
            ("caf%C3%A9%2B1.json", "café+1.json"),
            ("100%25.json", "100%.json"),
        ];
        for (encoded, want) in cases {
            assert_eq!(decode_form_key(encoded).unwrap(), want, "case {encoded}");
        }
        for bad in ["a%2", "a%zz", "%FF"] {
            assert!(
                decode_form_key(bad).is_err(),
                "case {bad} should be refused"
            );
        }
    }

    #[test]
    fn direct_s3_notification_names_its_object_with_the_key_decoded() {
        let n = direct(&s3_event(
            "ObjectCreated:Put",
            "trail",
            "AWSLogs/a+b%3D.json.gz",
        ))
        .unwrap();
        assert_eq!(n.objects, objects(&[("trail", "AWSLogs/a b=.json.gz")]));
    }

    #[test]
    fn records_without_identity_or_request_parameters_are_accepted() {
        // moto's notifications: no userIdentity, requestParameters or responseElements.
        let json = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b"},"object":{"key":"k.json.gz"}}}]}"#;
        assert_eq!(
            direct(json).unwrap().objects,
            objects(&[("b", "k.json.gz")])
        );
    }

    #[test]
    fn non_create_events_and_test_events_are_ignored() {
        let n = direct(&s3_event("ObjectRemoved:Delete", "b", "k")).unwrap();
        assert_eq!(
            (n.objects.len(), n.ignored.as_slice()),
            (0, [Ignored::NotObjectCreated].as_slice())
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2025-01-01T00:00:00Z","Bucket":"b"}"#;
        assert_eq!(direct(test).unwrap().ignored, [Ignored::S3TestEvent]);
        let eb = r#"{"version":"0","detail-type":"Object Deleted","source":"aws.s3",
            "detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}"#;
        assert_eq!(direct(eb).unwrap().ignored, [Ignored::NotObjectCreated]);
    }

    #[test]
    fn eventbridge_keys_are_taken_as_they_are() {
        let json = r#"{"version":"0","id":"1","detail-type":"Object Created","source":"aws.s3",
            "account":"123456789012","time":"2025-01-01T00:00:00Z","region":"us-east-1",
            "resources":["arn:aws:s3:::trail"],
            "detail":{"version":"0","bucket":{"name":"trail"},
            "object":{"key":"logs/a+b%2F.json.gz","size":10,"etag":"e"},"reason":"PutObject"}}"#;
        assert_eq!(
            direct(json).unwrap().objects,
            objects(&[("trail", "logs/a+b%2F.json.gz")])
        );
    }

    #[test]
    fn sqs_bodies_of_every_supported_shape_are_decoded_per_message() {
        let s3 = s3_event("ObjectCreated:Put", "b", "one%2Fa.json.gz");
        let cloudtrail =
            r#"{"s3Bucket":"trail","s3ObjectKey":["AWSLogs/x.json.gz","AWSLogs/y.json.gz"]}"#;
        let eventbridge = r#"{"detail-type":"Object Created","source":"aws.s3",
            "detail":{"bucket":{"name":"eb"},"object":{"key":"k e"}}}"#;
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        let batch = sqs_batch(&[
            ("m-s3", &s3),
            ("m-sns-s3", &sns_envelope(&s3)),
            ("m-ct-raw", cloudtrail),
            ("m-ct-sns", &sns_envelope(cloudtrail)),
            ("m-eb", eventbridge),
            ("m-test", test_event),
            ("m-bad", "not json"),
        ]);
        let d = decode(&batch);
        assert!(d.from_sqs);
        let got: Vec<(Option<String>, Result<Notification, String>)> = d
            .deliveries
            .into_iter()
            .map(|dl| (dl.message_id, dl.content.map_err(|e| e.to_string())))
            .collect();
        let ok = |pairs: &[(&str, &str)]| {
            Ok(Notification {
                objects: objects(pairs),
                ignored: vec![],
            })
        };
        let ct = ok(&[
            ("trail", "AWSLogs/x.json.gz"),
            ("trail", "AWSLogs/y.json.gz"),
        ]);
        let want = [
            ("m-s3", ok(&[("b", "one/a.json.gz")])),
            ("m-sns-s3", ok(&[("b", "one/a.json.gz")])),
            ("m-ct-raw", ct.clone()),
            ("m-ct-sns", ct),
            ("m-eb", ok(&[("eb", "k e")])),
            (
                "m-test",
                Ok(Notification {
                    objects: vec![],
                    ignored: vec![Ignored::S3TestEvent],
                }),
            ),
        ];
        for ((id, content), (want_id, want_content)) in got.iter().zip(&want) {
            assert_eq!(id.as_deref(), Some(*want_id));
            assert_eq!(content, want_content, "case {want_id}");
        }
        let (bad_id, bad) = &got[6];
        assert_eq!(bad_id.as_deref(), Some("m-bad"));
        assert!(
            bad.as_ref()
                .unwrap_err()
                .contains("SQS message body is not JSON"),
            "{bad:?}"
        );
    }

    #[test]
    fn direct_sns_invocation_is_decoded() {
        let cloudtrail = r#"{"s3Bucket":"trail","s3ObjectKey":["k.json.gz"]}"#;
        let json = format!(
            r#"{{"Records":[{{"EventSource":"aws:sns","EventVersion":"1.0","Sns":{{"Type":"Notification","Message":{}}}}}]}}"#,
            serde_json::to_string(cloudtrail).unwrap()
        );
        assert_eq!(
            direct(&json).unwrap().objects,
            objects(&[("trail", "k.json.gz")])
        );
    }

    #[test]
    fn incomplete_and_unknown_payloads_are_errors_that_say_what_is_missing() {
        let cases = [
            (
                r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}"#,
                "object key",
            ),
            (
                r#"{"detail-type":"Object Created","detail":{"object":{"key":"k"}}}"#,
                "bucket name",
            ),
            (r#"{"s3Bucket":"b"}"#, "s3ObjectKey"),
            (
                r#"{"hello":"world"}"#,
                "not an S3, SNS, CloudTrail or EventBridge notification",
            ),
            (
                r#"{"Type":"Notification","Message":"{\"Type\":\"Notification\",\"Message\":\"{\\\"Type\\\":\\\"Notification\\\",\\\"Message\\\":\\\"{}\\\"}\"}"}"#,
                "deeper",
            ),
        ];
        for (json, want) in cases {
            let err = direct(json).expect_err(json).to_string();
            assert!(err.contains(want), "case {want}: {err}");
        }
    }
}

//! CloudTrail log objects for tests: records in the real format, written as the real
//! `{"Records":[...]}` object, gzip or plain, or as JSON Lines.

#![allow(dead_code)]

use std::io::Write;
use std::sync::Mutex;

use flate2::write::GzEncoder;
use flate2::Compression;
use geotrail::finding::Finding;
use geotrail::notify::{Notifier, NotifyError};
use serde_json::{json, Value};

pub const ACCOUNT: &str = "123456789012";

/// One management event by IAM user `user` with access key `key`, from `ip` at `time`.
pub fn record(id: &str, time: &str, key: &str, user: &str, ip: &str, event_name: &str) -> Value {
    json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDAEXAMPLEPRINCIPAL",
            "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
            "accountId": ACCOUNT,
            "accessKeyId": key,
            "userName": user
        },
        "eventTime": time,
        "eventSource": "iam.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": ip,
        "userAgent": "aws-cli/2.15.0 Python/3.11.6",
        "requestParameters": null,
        "responseElements": null,
        "requestID": format!("req-{id}"),
        "eventID": id,
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management"
    })
}

/// `{"Records":[...]}` as bytes.
pub fn object(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Records": records })).expect("records serialize")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

pub fn json_lines(records: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).expect("record serializes");
        out.push(b'\n');
    }
    out
}

/// Keeps what it is given, for assertions.
#[derive(Default)]
pub struct CollectingNotifier {
    pub findings: Mutex<Vec<Finding>>,
}

impl CollectingNotifier {
    pub fn take(&self) -> Vec<Finding> {
        std::mem::take(&mut *self.findings.lock().unwrap())
    }
}

impl Notifier for CollectingNotifier {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        self.findings.lock().unwrap().extend_from_slice(findings);
        Ok(())
    }
}

//! Dead letters: objects no retry can judge, sent to a queue where a person finds them.
//!
//! A letter is an EventBridge "Object Created" event for the object, which the function
//! itself decodes (keys as stored, no URL encoding), with a `geotrail` block that says
//! why it is there: redriven to the function once the cause is fixed (a bucket policy, a
//! KMS grant, a repaired state item), it is read like any new object.

use aws_sdk_sqs::Client;
use serde::Serialize;

use super::event::ObjectRef;

/// Where dead letters go: an SQS queue, by URL.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    client: Client,
    queue_url: String,
}

/// One object that could not be judged, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    #[serde(rename = "detail-type")]
    pub detail_type: &'static str,
    pub source: &'static str,
    pub detail: Detail,
    pub geotrail: Why,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub bucket: Name,
    pub object: Key,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Name {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Key {
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Why {
    /// `s3://bucket/key`.
    pub object: String,
    /// The error, naming the object.
    pub reason: String,
    /// The invocation that gave up on it: its logs hold the rest of the story.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The SQS message that named the object, when the function reads a queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub function: String,
}

impl DeadLetter {
    pub fn new(object: &ObjectRef, reason: String, function: &str) -> DeadLetter {
        DeadLetter {
            detail_type: "Object Created",
            source: "geotrail.dead-letter",
            detail: Detail {
                bucket: Name {
                    name: object.bucket.clone(),
                },
                object: Key {
                    key: object.key.clone(),
                },
            },
            geotrail: Why {
                object: object.to_string(),
                reason,
                request_id: None,
                message_id: None,
                function: function.to_owned(),
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a dead letter of strings serializes")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("dead-letter queue {queue_url}: SendMessage of {object} failed: {source}")]
pub struct DeadLetterError {
    queue_url: String,
    object: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl DeadLetterQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> DeadLetterQueue {
        DeadLetterQueue {
            client,
            queue_url: queue_url.into(),
        }
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub async fn send(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(letter.to_json())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DeadLetterError {
                queue_url: self.queue_url.clone(),
                object: letter.geotrail.object.clone(),
                source: Box::new(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::lambda::event::Invocation;

    #[test]
    fn a_dead_letter_redriven_to_the_function_names_its_object_again() {
        let object = ObjectRef::new("trail", "AWSLogs/1/CloudTrail/a b+c.json.gz");
        let mut letter = DeadLetter::new(&object, "s3://trail/...: AccessDenied".into(), "fn");
        letter.geotrail.request_id = Some("req-1".into());
        let json = letter.to_json();
        let invocation: Invocation = serde_json::from_str(&json).unwrap();
        let decoded = invocation.decode();
        let objects = &decoded.deliveries[0].content.as_ref().unwrap().objects;
        assert_eq!(objects, &[object]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["geotrail"]["request_id"], "req-1");
        assert_eq!(value["geotrail"]["reason"], "s3://trail/...: AccessDenied");
    }
}

//! `DynamoClaims`: incident claims in the state table, beside the subjects.
//!
//! One item per incident, keyed `claim#<incident key>` (no subject starts with `claim#`:
//! access key ids are upper-case alphanumerics, principals are ARNs):
//!
//! | attribute    | type | content                                                     |
//! |--------------|------|-------------------------------------------------------------|
//! | `pk`         | S    | `claim#` and the incident key                               |
//! | `token`      | S    | the claimant's random token: only it marks sent or releases |
//! | `status`     | S    | `pending`, then `sent`                                      |
//! | `claimed_at` | N    | epoch ms of the claim (wall clock: crashed holders time out) |
//! | `event_ms`   | N    | the incident's event time, when repeats are judged by it    |
//! | `expires_at` | N    | epoch seconds: the claim's end, and the table's TTL key     |
//!
//! Every rule of [`ClaimRecord::yields_to`](crate::notify::claim::ClaimRecord::yields_to)
//! is the PutItem's condition, so two claimants
//! cannot both win: DynamoDB serializes conditional writes to one item.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use crate::notify::claim::{Claim, ClaimPolicy, ClaimStore, Incident};
use crate::notify::NotifyError;

const PK: &str = "pk";
const PREFIX: &str = "claim#";
const PENDING: &str = "pending";
const SENT: &str = "sent";

#[derive(Debug, Clone)]
pub struct DynamoClaims {
    client: Client,
    table: String,
}

impl DynamoClaims {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoClaims {
        DynamoClaims {
            client,
            table: table.into(),
        }
    }

    fn key(incident: &Incident) -> AttributeValue {
        AttributeValue::S(format!("{PREFIX}{}", incident.key))
    }

    fn error<E>(&self, what: String, err: SdkError<E>) -> NotifyError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        NotifyError::Backend {
            notifier: format!("incident claims in table {}", self.table),
            message: what,
            source: Some(Box::new(err)),
        }
    }
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl ClaimStore for DynamoClaims {
    async fn claim(
        &self,
        incident: &Incident,
        token: &str,
        now_ms: i64,
        policy: &ClaimPolicy,
    ) -> Result<Claim, NotifyError> {
        let timeout_ms = policy.pending_timeout.as_millis() as i64;
        let now_s = now_ms.div_euclid(1000);
        let mut item = HashMap::from([
            (PK.to_owned(), Self::key(incident)),
            ("token".to_owned(), AttributeValue::S(token.to_owned())),
            ("status".to_owned(), AttributeValue::S(PENDING.to_owned())),
            ("claimed_at".to_owned(), n(now_ms)),
            (
                "expires_at".to_owned(),
                n(now_s.saturating_add(policy.lifetime.as_secs() as i64)),
            ),
        ]);
        // DynamoDB's TTL deletes an expired item within days, not at once: the condition
        // reads the expiry itself.
        let mut condition = "attribute_not_exists(#pk) \
             OR (#status = :pending AND #claimed_at <= :stale_before) \
             OR #expires_at <= :now_s"
            .to_owned();
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#claimed_at", "claimed_at")
            .expression_attribute_names("#expires_at", "expires_at")
            .expression_attribute_values(":now_s", n(now_s))
            .expression_attribute_values(":pending", AttributeValue::S(PENDING.to_owned()))
            .expression_attribute_values(":stale_before", n(now_ms - timeout_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(event_ms) = incident.event_ms {
            item.insert("event_ms".to_owned(), n(event_ms));
        }
        if let (Some(event_ms), Some(after)) = (incident.event_ms, policy.reopen_after) {
            // Another incident of the same places: its event `after` or more away.
            let after = after.as_millis() as i64;
            condition.push_str(" OR #event_ms <= :far_before OR #event_ms >= :far_after");
            request = request
                .expression_attribute_names("#event_ms", "event_ms")
                .expression_attribute_values(":far_before", n(event_ms - after))
                .expression_attribute_values(":far_after", n(event_ms + after));
        }
        let sent = request
            .set_item(Some(item))
            .condition_expression(condition)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Claim::Taken),
            Err(err) => {
                if let Some(PutItemError::ConditionalCheckFailedException(failed)) =
                    err.as_service_error()
                {
                    let status = failed
                        .item()
                        .and_then(|old| old.get("status"))
                        .and_then(|v| v.as_s().ok());
                    return Ok(if status.map(String::as_str) == Some(SENT) {
                        Claim::Sent
                    } else {
                        Claim::Held
                    });
                }
                Err(self.error(
                    format!("PutItem of the claim of {} failed", incident.key),
                    err,
                ))
            }
        }
    }

    async fn mark_sent(
        &self,
        incident: &Incident,
        token: &str,
        now_ms: i64,
    ) -> Result<(), NotifyError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, Self::key(incident))
            .update_expression("SET #status = :sent, sent_at = :now")
            .condition_expression("#token = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":sent", AttributeValue::S(SENT.to_owned()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":token", AttributeValue::S(token.to_owned()))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            // Retaken by someone who judged us crashed: theirs to mark now.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(self.error(
                format!("UpdateItem marking {} sent failed", incident.key),
                err,
            )),
        }
    }

    async fn release(&self, incident: &Incident, token: &str) -> Result<(), NotifyError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, Self::key(incident))
            .condition_expression("#token = :token")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":token", AttributeValue::S(token.to_owned()))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(self.error(
                format!("DeleteItem releasing the claim of {} failed", incident.key),
                err,
            )),
        }
    }
}

//! At most one message per incident: each finding's incident is claimed before it is
//! published, and marked sent after.
//!
//! Finding ids are deterministic, but only within a dedup window: two Lambdas that judge
//! the same hop with stale state, its events falling in different windows, raise it with
//! different ids, and neither email nor Chatbot deduplicates. [`ClaimingNotifier`] wraps
//! the notifier that delivers and asks a [`ClaimStore`] (a conditional write) first:
//!
//! 1. **claim** the incident, with a fresh token: granted when nobody holds it, when the
//!    holder's claim has been pending longer than the pending timeout (it crashed
//!    between claim and publish), when the claim has outlived its lifetime, or when the
//!    claimed incident is a different one of the same key: its event `reopen_after` or
//!    more away, as the detector itself judges repeats (see [`ClaimPolicy::for_detection`]);
//! 2. **publish** the finding alone, so that a failure names exactly what was not sent;
//! 3. **mark it sent**; on a failed publish, release the claim so a retry takes it again.
//!
//! A finding whose incident was sent already is dropped. One claimed by another
//! invocation that is still publishing is waited for, a few seconds at most; if it is
//! still pending then, the publish fails as transient and the object is retried later,
//! when the claim is either sent or stale: a finding is never dropped on a claim that
//! might not end in a message.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use super::{Notifier, NotifyError};
use crate::finding::{Finding, Rule};

/// What identifies an incident, whatever id the finding got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// `rule/subject/place/place` for impossible travel (places ordered); the finding
    /// id for other rules.
    pub key: String,
    /// The event time of the finding, epoch ms, for impossible travel: with
    /// [`ClaimPolicy::reopen_after`], a claim covers repeats that close to it. `None`:
    /// the key alone identifies it.
    pub event_ms: Option<i64>,
}

impl Incident {
    pub fn of(finding: &Finding) -> Incident {
        match (&finding.rule, &finding.impossible_travel) {
            (Rule::ImpossibleTravel, Some(travel)) => {
                let place = |e: &crate::finding::TravelEndpoint| {
                    format!(
                        "{}/{}/{}",
                        e.country_code.as_deref().unwrap_or("-"),
                        e.subdivision.as_deref().unwrap_or("-"),
                        e.city.as_deref().unwrap_or("-"),
                    )
                };
                let mut pair = [
                    place(&travel.triggering_locations.first_location),
                    place(&travel.triggering_locations.second_location),
                ];
                pair.sort();
                Incident {
                    key: format!(
                        "{}/{}/{}/{}",
                        finding.rule.as_str(),
                        finding.subject,
                        pair[0],
                        pair[1]
                    ),
                    event_ms: crate::cloudtrail::parse_event_time(&finding.event_time),
                }
            }
            _ => Incident {
                key: format!("{}/{}", finding.rule.as_str(), finding.finding_id),
                event_ms: None,
            },
        }
    }
}

/// What a claim attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours: publish, then mark it sent.
    Taken,
    /// Published already, by us or another invocation.
    Sent,
    /// Another invocation claimed it and has not marked it sent yet.
    Held,
}

/// Timing of claims, shared by every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimPolicy {
    /// A claim pending longer than this is taken to be a crashed holder's, and retaken.
    /// Longer than a publish can take (the SNS client's own retries included).
    pub pending_timeout: Duration,
    /// A finding of the same key this far or farther in event time from the claimed one
    /// is a new incident; `None`: never, while the claim lives.
    pub reopen_after: Option<Duration>,
    /// How long a claim keeps suppressing repeats (wall clock from the claim).
    pub lifetime: Duration,
    /// How long a pending claim of another invocation is waited for before the publish
    /// fails (and the object is retried).
    pub wait_for_holder: Duration,
}

impl Default for ClaimPolicy {
    fn default() -> Self {
        ClaimPolicy {
            pending_timeout: Duration::from_secs(120),
            reopen_after: None,
            lifetime: Duration::from_secs(30 * 86_400),
            wait_for_holder: Duration::from_secs(5),
        }
    }
}

impl ClaimPolicy {
    /// Claims that repeat the detector's own rules for a pair of places already alerted:
    /// with a baseline, any earlier alert of the pair suppresses it for as long as the
    /// subject's history keeps the mark (the history window); without one, only an alert
    /// within the dedup window does.
    pub fn for_detection(policy: &crate::detect::Policy) -> ClaimPolicy {
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        let defaults = ClaimPolicy::default();
        match policy.baseline {
            Some(_) => ClaimPolicy {
                reopen_after: None,
                lifetime: ms(policy.history_window_ms),
                ..defaults
            },
            None => ClaimPolicy {
                reopen_after: Some(ms(policy.dedup_window_ms)),
                lifetime: ms(policy.dedup_window_ms).max(defaults.pending_timeout),
                ..defaults
            },
        }
    }
}

/// Where claims live: one record per incident key, written conditionally.
pub trait ClaimStore: Sync {
    /// Claims `incident` for `token` at `now_ms` (epoch ms), under `policy`.
    fn claim(
        &self,
        incident: &Incident,
        token: &str,
        now_ms: i64,
        policy: &ClaimPolicy,
    ) -> impl Future<Output = Result<Claim, NotifyError>> + Send;

    /// Marks the incident sent, if `token` still holds it.
    fn mark_sent(
        &self,
        incident: &Incident,
        token: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), NotifyError>> + Send;

    /// Gives the claim up, if `token` still holds it: the publish failed.
    fn release(
        &self,
        incident: &Incident,
        token: &str,
    ) -> impl Future<Output = Result<(), NotifyError>> + Send;
}

/// A [`Notifier`] that publishes each incident at most once through `inner`.
#[derive(Debug, Clone)]
pub struct ClaimingNotifier<C, N> {
    claims: C,
    inner: N,
    policy: ClaimPolicy,
    channel: Option<&'static str>,
}

impl<C: ClaimStore, N: Notifier + Sync> ClaimingNotifier<C, N> {
    pub fn new(claims: C, inner: N, policy: ClaimPolicy) -> ClaimingNotifier<C, N> {
        ClaimingNotifier {
            claims,
            inner,
            policy,
            channel: None,
        }
    }

    /// Claims incidents under keys of their own, `CHANNEL:` and the incident key, so that
    /// several notifiers share one claim store and each delivers each incident once: a
    /// failure of one is retried without repeating what the others delivered. Without a
    /// channel the keys are the incident keys alone (the SNS topic's, as they always were).
    pub fn with_channel(mut self, channel: &'static str) -> ClaimingNotifier<C, N> {
        self.channel = Some(channel);
        self
    }

    fn incident(&self, finding: &Finding) -> Incident {
        let mut incident = Incident::of(finding);
        if let Some(channel) = self.channel {
            incident.key = format!("{channel}:{}", incident.key);
        }
        incident
    }

    pub fn inner(&self) -> &N {
        &self.inner
    }

    pub fn claims(&self) -> &C {
        &self.claims
    }

    /// Claims `incident`, waiting out another invocation's pending claim for a while.
    async fn take(&self, incident: &Incident, token: &str) -> Result<Claim, NotifyError> {
        let started = std::time::Instant::now();
        let mut retry = 0u32;
        loop {
            let claim = self
                .claims
                .claim(incident, token, crate::clock::epoch_ms_now(), &self.policy)
                .await?;
            if claim != Claim::Held || started.elapsed() >= self.policy.wait_for_holder {
                return Ok(claim);
            }
            // Full jitter from 50 ms up to 1 s: the holder is one publish away from done.
            let ceiling = Duration::from_millis(50)
                .saturating_mul(1 << retry.min(5))
                .min(Duration::from_secs(1));
            tokio::time::sleep(ceiling.mul_f64(fastrand::f64())).await;
            retry += 1;
        }
    }
}

impl<C: ClaimStore, N: Notifier + Sync> Notifier for ClaimingNotifier<C, N> {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        let mut failures: Vec<String> = Vec::new();
        let mut first_error: Option<NotifyError> = None;
        for finding in findings {
            let incident = self.incident(finding);
            let token = format!("{:032x}", fastrand::u128(..));
            match self.take(&incident, &token).await {
                Ok(Claim::Taken) => {}
                Ok(Claim::Sent) => continue,
                Ok(Claim::Held) => {
                    failures.push(format!(
                        "finding {}: incident {} is still being published by another invocation",
                        finding.finding_id, incident.key
                    ));
                    continue;
                }
                Err(err) => {
                    failures.push(format!("finding {}: {err}", finding.finding_id));
                    first_error.get_or_insert(err);
                    continue;
                }
            }
            match self.inner.publish(std::slice::from_ref(finding)).await {
                Ok(()) => {
                    let marked = self
                        .claims
                        .mark_sent(&incident, &token, crate::clock::epoch_ms_now())
                        .await;
                    if let Err(err) = marked {
                        // Delivered: failing now would only publish it again. The claim
                        // stays pending and is retaken after the timeout, which at worst
                        // repeats this one message.
                        warn!(
                            finding_id = finding.finding_id.as_str(),
                            incident = incident.key.as_str(),
                            error = %err,
                            "finding published but its claim could not be marked sent"
                        );
                    }
                }
                Err(err) => {
                    if let Err(release) = self.claims.release(&incident, &token).await {
                        warn!(
                            incident = incident.key.as_str(),
                            error = %release,
                            "claim of an unpublished finding not released: retaken after the timeout"
                        );
                    }
                    failures.push(format!("finding {}: {err}", finding.finding_id));
                    first_error.get_or_insert(err);
                }
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(NotifyError::Backend {
            notifier: match self.channel {
                Some(channel) => format!("claiming notifier ({channel})"),
                None => "claiming notifier".to_owned(),
            },
            message: format!(
                "{} of {} findings not published: {}",
                failures.len(),
                findings.len(),
                failures.join("; ")
            ),
            source: first_error.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
        })
    }
}

/// The state of one incident's claim, as every store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecord {
    pub token: String,
    pub sent: bool,
    /// Epoch ms of the claim.
    pub claimed_at_ms: i64,
    pub event_ms: Option<i64>,
    /// Epoch ms after which the claim no longer suppresses anything.
    pub expires_at_ms: i64,
}

impl ClaimRecord {
    /// Whether a new claim of `incident` at `now_ms` may replace this record.
    pub fn yields_to(&self, incident: &Incident, now_ms: i64, policy: &ClaimPolicy) -> bool {
        let other_incident = match (policy.reopen_after, self.event_ms, incident.event_ms) {
            (Some(after), Some(held), Some(new)) => (held - new).abs() >= after.as_millis() as i64,
            _ => false,
        };
        let stale = !self.sent
            && now_ms.saturating_sub(self.claimed_at_ms)
                >= policy.pending_timeout.as_millis() as i64;
        let expired = now_ms >= self.expires_at_ms;
        other_incident || stale || expired
    }
}

/// Claims in a map: for one process (the CLI) and tests.
#[derive(Debug, Default)]
pub struct MemoryClaims {
    records: std::sync::Mutex<std::collections::HashMap<String, ClaimRecord>>,
}

impl MemoryClaims {
    pub fn new() -> MemoryClaims {
        MemoryClaims::default()
    }

    pub fn record(&self, key: &str) -> Option<ClaimRecord> {
        self.lock().get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, ClaimRecord>> {
        // Each update is one insert or field write: a poisoned map is still sound.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClaimStore for MemoryClaims {
    async fn claim(
        &self,
        incident: &Incident,
        token: &str,
        now_ms: i64,
        policy: &ClaimPolicy,
    ) -> Result<Claim, NotifyError> {
        let mut records = self.lock();
        if let Some(held) = records.get(&incident.key) {
            if !held.yields_to(incident, now_ms, policy) {
                return Ok(if held.sent { Claim::Sent } else { Claim::Held });
            }
        }
        records.insert(
            incident.key.clone(),
            ClaimRecord {
                token: token.to_owned(),
                sent: false,
                claimed_at_ms: now_ms,
                event_ms: incident.event_ms,
                expires_at_ms: now_ms.saturating_add(policy.lifetime.as_millis() as i64),
            },
        );
        Ok(Claim::Taken)
    }

    async fn mark_sent(
        &self,
        incident: &Incident,
        token: &str,
        _now_ms: i64,
    ) -> Result<(), NotifyError> {
        if let Some(held) = self.lock().get_mut(&incident.key) {
            if held.token == token {
                held.sent = true;
            }
        }
        Ok(())
    }

    async fn release(&self, incident: &Incident, token: &str) -> Result<(), NotifyError> {
        let mut records = self.lock();
        if records
            .get(&incident.key)
            .is_some_and(|held| held.token == token)
        {
            records.remove(&incident.key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MINUTE: i64 = 60_000;

    /// One store behind several notifiers, as the Lambda's sinks share their table.
    impl ClaimStore for Arc<MemoryClaims> {
        async fn claim(
            &self,
            incident: &Incident,
            token: &str,
            now_ms: i64,
            policy: &ClaimPolicy,
        ) -> Result<Claim, NotifyError> {
            MemoryClaims::claim(self, incident, token, now_ms, policy).await
        }

        async fn mark_sent(
            &self,
            incident: &Incident,
            token: &str,
            now_ms: i64,
        ) -> Result<(), NotifyError> {
            MemoryClaims::mark_sent(self, incident, token, now_ms).await
        }

        async fn release(&self, incident: &Incident, token: &str) -> Result<(), NotifyError> {
            MemoryClaims::release(self, incident, token).await
        }
    }

    fn incident(event_ms: Option<i64>) -> Incident {
        Incident {
            key: "impossible_travel/AKIA/AU/-/Sydney/DE/-/Berlin".into(),
            event_ms,
        }
    }

    fn policy() -> ClaimPolicy {
        ClaimPolicy {
            pending_timeout: Duration::from_secs(120),
            reopen_after: Some(Duration::from_secs(3600)),
            lifetime: Duration::from_secs(86_400),
            wait_for_holder: Duration::from_millis(0),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_is_taken_once_then_held_then_sent() {
        let claims = MemoryClaims::new();
        let (p, now) = (policy(), 1_000_000);
        let i = incident(Some(0));
        assert_eq!(claims.claim(&i, "a", now, &p).await.unwrap(), Claim::Taken);
        assert_eq!(claims.claim(&i, "b", now, &p).await.unwrap(), Claim::Held);
        claims.mark_sent(&i, "b", now).await.unwrap();
        assert!(
            !claims.record(&i.key).unwrap().sent,
            "only the holder marks it"
        );
        claims.mark_sent(&i, "a", now).await.unwrap();
        assert_eq!(claims.claim(&i, "b", now, &p).await.unwrap(), Claim::Sent);
        // A repeat within the dedup window is the same incident, whatever its id.
        let repeat = incident(Some(59 * MINUTE));
        assert_eq!(
            claims.claim(&repeat, "b", now, &p).await.unwrap(),
            Claim::Sent
        );
        // Beyond it, a new incident of the same places.
        let later = incident(Some(61 * MINUTE));
        assert_eq!(
            claims.claim(&later, "b", now, &p).await.unwrap(),
            Claim::Taken
        );
        claims.mark_sent(&later, "b", now).await.unwrap();
        // Unless the policy, like a baseline, never reopens a pair while the claim lives.
        let never = ClaimPolicy {
            reopen_after: None,
            ..p
        };
        let much_later = incident(Some(600 * MINUTE));
        assert_eq!(
            claims.claim(&much_later, "c", now, &never).await.unwrap(),
            Claim::Sent
        );
        let day = 86_400_000;
        assert_eq!(
            claims
                .claim(&much_later, "c", now + day, &never)
                .await
                .unwrap(),
            Claim::Taken,
            "a claim past its lifetime suppresses nothing"
        );
    }

    #[test]
    fn claims_follow_the_detectors_rules_for_repeats() {
        let mut policy = crate::detect::Policy::default();
        assert!(policy.baseline.is_some());
        let with_baseline = ClaimPolicy::for_detection(&policy);
        assert_eq!(with_baseline.reopen_after, None);
        assert_eq!(
            with_baseline.lifetime.as_millis() as i64,
            policy.history_window_ms
        );
        policy.baseline = None;
        let without = ClaimPolicy::for_detection(&policy);
        assert_eq!(
            without.reopen_after.map(|d| d.as_millis() as i64),
            Some(policy.dedup_window_ms)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_pending_claim_is_retaken_after_the_timeout_and_a_released_one_at_once() {
        let claims = MemoryClaims::new();
        let p = policy();
        let i = incident(None);
        assert_eq!(claims.claim(&i, "a", 0, &p).await.unwrap(), Claim::Taken);
        assert_eq!(
            claims.claim(&i, "b", 119_999, &p).await.unwrap(),
            Claim::Held
        );
        assert_eq!(
            claims.claim(&i, "b", 120_000, &p).await.unwrap(),
            Claim::Taken,
            "the holder crashed between claim and publish"
        );
        claims.release(&i, "a").await.unwrap();
        assert!(claims.record(&i.key).is_some(), "only the holder releases");
        claims.release(&i, "b").await.unwrap();
        assert_eq!(
            claims.claim(&i, "c", 120_001, &p).await.unwrap(),
            Claim::Taken
        );
    }

    /// Fails the first `fail` publishes.
    #[derive(Default)]
    struct Failing {
        fail: std::sync::atomic::AtomicUsize,
        sent: std::sync::Mutex<Vec<String>>,
    }

    impl Notifier for Failing {
        async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
            use std::sync::atomic::Ordering;
            let failing = self
                .fail
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                return Err(NotifyError::Backend {
                    notifier: "test".into(),
                    message: "down".into(),
                    source: None,
                });
            }
            let mut sent = self.sent.lock().unwrap();
            sent.extend(findings.iter().map(|f| f.finding_id.clone()));
            Ok(())
        }
    }

    fn finding(id: &str, subject: &str) -> Finding {
        let json = serde_json::json!({
            "finding_id": id, "rule": "future_event_time", "severity": "medium",
            "title": "t", "summary": "s", "triage": [], "account_id": null,
            "subject": subject, "subject_kind": "access_key", "user_identity": {},
            "geoip": {"database_type": "x", "build_epoch": 0},
            "source_object": "s3://b/k", "event_time": "2025-01-01T00:00:00Z"
        });
        serde_json::from_value(json).expect("a finding")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_publish_releases_its_claim_and_the_retry_sends_only_what_was_not_sent() {
        let inner = Failing::default();
        inner.fail.store(1, std::sync::atomic::Ordering::Relaxed);
        let notifier = ClaimingNotifier::new(MemoryClaims::new(), inner, policy());
        let findings = [finding("f1", "AKIA1"), finding("f2", "AKIA2")];
        let err = notifier.publish(&findings).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("1 of 2 findings not published: finding f1"),
            "{err}"
        );
        assert_eq!(*notifier.inner().sent.lock().unwrap(), ["f2"]);
        notifier.publish(&findings).await.unwrap();
        notifier.publish(&findings).await.unwrap();
        assert_eq!(*notifier.inner().sent.lock().unwrap(), ["f2", "f1"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn channels_share_a_store_and_a_failed_channel_is_retried_alone() {
        let claims = std::sync::Arc::new(MemoryClaims::new());
        let topic = ClaimingNotifier::new(claims.clone(), Failing::default(), policy());
        let hub = ClaimingNotifier::new(claims.clone(), Failing::default(), policy())
            .with_channel("securityhub");
        hub.inner()
            .fail
            .store(1, std::sync::atomic::Ordering::Relaxed);
        let both = crate::notify::Fanout::new(topic, Some(hub));
        let f = [finding("f1", "AKIA1")];

        let err = both.publish(&f).await.unwrap_err().to_string();
        assert!(
            err.contains("claiming notifier (securityhub)") && err.contains("f1"),
            "{err}"
        );
        both.publish(&f).await.unwrap();
        both.publish(&f).await.unwrap();
        assert_eq!(
            *both.first().inner().sent.lock().unwrap(),
            ["f1"],
            "sent once"
        );
        let hub = both.second().as_ref().unwrap();
        assert_eq!(
            *hub.inner().sent.lock().unwrap(),
            ["f1"],
            "retried alone, once"
        );
        let key = Incident::of(&f[0]).key;
        assert!(claims.record(&key).is_some_and(|r| r.sent));
        assert!(claims
            .record(&format!("securityhub:{key}"))
            .is_some_and(|r| r.sent));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_held_by_another_fails_the_publish_rather_than_dropping_the_finding() {
        let notifier = ClaimingNotifier::new(MemoryClaims::new(), Failing::default(), policy());
        let f = finding("f1", "AKIA1");
        let i = Incident::of(&f);
        let now = crate::clock::epoch_ms_now();
        notifier
            .claims()
            .claim(&i, "other", now, &policy())
            .await
            .unwrap();
        let err = notifier
            .publish(std::slice::from_ref(&f))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("still being published by another"),
            "{err}"
        );
        assert!(notifier.inner().sent.lock().unwrap().is_empty());
    }
}

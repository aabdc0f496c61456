//! Batch calls that report failures per entry (SNS's `PublishBatch`, Security Hub's
//! `BatchImportFindings`, EventBridge's `PutEvents`): packing entries into calls, and retrying what failed on
//! the service's side with full-jitter backoff, while an entry the service refused as
//! malformed fails the publish, naming its finding.
//!
//! A call that answers 200 can still have dropped entries: nothing here treats a
//! success as "all delivered" without reading the per-entry results.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

// One SdkError type serves every SDK crate; this one re-exports it.
use aws_sdk_eventbridge::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::backoff::Backoff;
use crate::notify::NotifyError;

/// One entry a batch call did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryFailure {
    /// The entry's index in the entries given to the call's `send`; `None` when the
    /// service named an entry that was not sent.
    pub index: Option<usize>,
    /// What the service called the entry, for the message when `index` is `None`.
    pub reported: String,
    pub code: String,
    pub message: Option<String>,
    pub retriable: bool,
}

/// A call that failed as a whole.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub retriable: bool,
    pub error: NotifyError,
}

/// Throttling and server-side codes, of the call or of one entry.
pub(crate) fn is_retriable_code(code: &str) -> bool {
    code.contains("Throttl")
        || code.contains("TooManyRequests")
        // Security Hub's "beyond the current account or throttling limits".
        || code.contains("LimitExceeded")
        || matches!(
            code,
            "InternalError"
                | "InternalFailure"
                | "InternalException"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                // KMS behind an encrypted SNS topic.
                | "KMSInternal"
                | "KMSUnavailable"
        )
}

/// Whether a failed call is worth sending again: network and timeouts, throttling, 5xx.
pub(crate) fn is_retriable_call_error<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(e) => e.err().code().is_some_and(is_retriable_code),
        _ => false,
    }
}

/// The error of a call that failed as a whole, naming every finding it carried.
pub(crate) fn call_failed<E, R>(
    notifier: String,
    operation: &str,
    ids: &[&str],
    err: SdkError<E, R>,
) -> AttemptError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = err.code().unwrap_or("").to_owned();
    AttemptError {
        retriable: is_retriable_call_error(&err),
        error: NotifyError::Backend {
            notifier,
            message: format!(
                "{operation} of {} findings ({}) failed {code}",
                ids.len(),
                ids.join(", ")
            )
            .trim_end()
            .to_owned(),
            source: Some(Box::new(err)),
        },
    }
}

/// Splits entries of `sizes` bytes into calls of at most `max_entries` entries and
/// `max_bytes` in all (an entry larger than `max_bytes` goes alone, for the service to
/// refuse by name).
pub(crate) fn pack(sizes: &[usize], max_entries: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start == max_entries || bytes + size > max_bytes) {
            batches.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    batches
}

/// Sends the entries of one batch (`finding_ids[i]` names entry `i`) with `send`, which
/// takes the indices to send and reports failures by index; retries throttled calls and
/// entries that failed on the service's side, up to `backoff.max_attempts` calls.
///
/// Generic over `send` and `sleep` so that the failure paths, which moto does not
/// produce, are tested with a scripted fake.
pub(crate) async fn send_with_retries<F, Fut, S, SFut>(
    sink: &str,
    operation: &str,
    finding_ids: &[&str],
    backoff: &Backoff,
    mut send: F,
    mut sleep: S,
) -> Result<(), NotifyError>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Vec<EntryFailure>, AttemptError>>,
    S: FnMut(Duration) -> SFut,
    SFut: Future<Output = ()>,
{
    let backend = |message: String, source: Option<NotifyError>| NotifyError::Backend {
        notifier: sink.to_owned(),
        message,
        source: source.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
    };
    let mut pending: Vec<usize> = (0..finding_ids.len()).collect();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let (retry, last_error) = match send(pending.clone()).await {
            Ok(failures) if failures.is_empty() => return Ok(()),
            Ok(failures) => {
                let known = |f: &EntryFailure| f.index.filter(|i| pending.contains(i));
                let describe = |f: &EntryFailure| {
                    let finding = known(f)
                        .and_then(|i| finding_ids.get(i).copied())
                        .map_or_else(
                            || format!("an entry it called {:?}", f.reported),
                            |id| format!("finding {id}"),
                        );
                    format!(
                        "{finding}: {} {}",
                        f.code,
                        f.message.as_deref().unwrap_or("")
                    )
                    .trim_end()
                    .to_owned()
                };
                let refused: Vec<String> = failures
                    .iter()
                    .filter(|f| !f.retriable || known(f).is_none())
                    .map(describe)
                    .collect();
                if !refused.is_empty() {
                    return Err(backend(
                        format!("{operation} refused {}", refused.join("; ")),
                        None,
                    ));
                }
                let retry: Vec<usize> = failures.iter().filter_map(known).collect();
                let summary = failures.iter().map(describe).collect::<Vec<_>>().join("; ");
                (
                    retry,
                    backend(format!("{operation} entries failed: {summary}"), None),
                )
            }
            Err(AttemptError {
                retriable: true,
                error,
            }) => (pending.clone(), error),
            Err(AttemptError {
                retriable: false,
                error,
            }) => return Err(error),
        };
        if attempt >= backoff.max_attempts {
            let names: Vec<&str> = retry
                .iter()
                .filter_map(|&i| finding_ids.get(i).copied())
                .collect();
            return Err(backend(
                format!(
                    "findings {} still not accepted after {attempt} {operation} attempts",
                    names.join(", ")
                ),
                Some(last_error),
            ));
        }
        sleep(backoff.delay(attempt - 1)).await;
        pending = retry;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
            .block_on(f)
    }

    fn failure(index: usize, code: &str) -> EntryFailure {
        EntryFailure {
            index: Some(index),
            reported: index.to_string(),
            code: code.to_owned(),
            message: Some("nope".to_owned()),
            retriable: is_retriable_code(code),
        }
    }

    fn throttled() -> AttemptError {
        AttemptError {
            retriable: true,
            error: NotifyError::Backend {
                notifier: "sink".into(),
                message: "ThrottlingException".into(),
                source: None,
            },
        }
    }

    type Script = Vec<Result<Vec<EntryFailure>, AttemptError>>;

    fn run_script(script: Script, n: usize) -> (Result<(), NotifyError>, Vec<Vec<usize>>, usize) {
        let ids: Vec<String> = (0..n).map(|i| format!("finding-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let script = RefCell::new(script.into_iter().rev().collect::<Vec<_>>());
        let sent = RefCell::new(Vec::new());
        let sleeps = RefCell::new(0);
        let backoff = Backoff {
            max_attempts: 4,
            ..Backoff::default()
        };
        let result = run(send_with_retries(
            "Security Hub product p",
            "BatchImportFindings",
            &ids,
            &backoff,
            |indices| {
                sent.borrow_mut().push(indices);
                std::future::ready(script.borrow_mut().pop().unwrap_or(Ok(Vec::new())))
            },
            |_| {
                *sleeps.borrow_mut() += 1;
                std::future::ready(())
            },
        ));
        (result, sent.into_inner(), sleeps.into_inner())
    }

    #[test]
    fn failed_entries_are_retried_when_retriable_and_reported_by_finding_otherwise() {
        // (case, script, entries, ok, the indices sent by each call)
        type Case = (&'static str, Script, usize, bool, Vec<Vec<usize>>);
        let cases: Vec<Case> = vec![
            (
                "all accepted",
                vec![Ok(vec![])],
                3,
                true,
                vec![vec![0, 1, 2]],
            ),
            (
                "a throttled entry is sent again alone",
                vec![Ok(vec![failure(1, "ThrottlingException")]), Ok(vec![])],
                3,
                true,
                vec![vec![0, 1, 2], vec![1]],
            ),
            (
                "server faults are retried",
                vec![
                    Ok(vec![
                        failure(0, "InternalFailure"),
                        failure(2, "InternalException"),
                    ]),
                    Ok(vec![]),
                ],
                3,
                true,
                vec![vec![0, 1, 2], vec![0, 2]],
            ),
            (
                "a throttled call is retried whole",
                vec![Err(throttled()), Ok(vec![])],
                2,
                true,
                vec![vec![0, 1], vec![0, 1]],
            ),
            (
                "a refused entry fails the publish",
                vec![Ok(vec![failure(1, "InvalidInput")])],
                3,
                false,
                vec![vec![0, 1, 2]],
            ),
            (
                "retries are bounded",
                (0..5).map(|_| Err(throttled())).collect(),
                1,
                false,
                vec![vec![0]; 4],
            ),
            (
                "an entry the call did not send is an error, not a silent loss",
                vec![Ok(vec![EntryFailure {
                    index: None,
                    reported: "zz".into(),
                    code: "ThrottlingException".into(),
                    message: None,
                    retriable: true,
                }])],
                1,
                false,
                vec![vec![0]],
            ),
        ];
        for (case, script, n, ok, calls) in cases {
            let (result, sent, sleeps) = run_script(script, n);
            assert_eq!(result.is_ok(), ok, "{case}: {result:?}");
            assert_eq!(sent, calls, "{case}");
            assert_eq!(
                sleeps,
                calls.len() - 1,
                "{case}: one backoff before each retry"
            );
        }
    }

    #[test]
    fn errors_name_the_findings_and_the_sink() {
        let (result, _, _) = run_script(vec![Ok(vec![failure(1, "InvalidInput")])], 2);
        let msg = result.expect_err("refused").to_string();
        assert!(
            msg.contains("finding-1")
                && msg.contains("InvalidInput")
                && msg.contains("Security Hub product p")
                && !msg.contains("finding-0"),
            "{msg}"
        );
        let (result, _, _) = run_script((0..4).map(|_| Err(throttled())).collect(), 2);
        let msg = result.expect_err("gave up").to_string();
        assert!(
            msg.contains("finding-0, finding-1") && msg.contains("4 BatchImportFindings attempts"),
            "{msg}"
        );
    }

    #[test]
    fn batches_hold_at_most_max_entries_and_max_bytes() {
        #[allow(clippy::single_range_in_vec_init)]
        let cases: [(&[usize], &[Range<usize>]); 5] = [
            (&[], &[]),
            (&[1; 10], &[0..10]),
            (&[1; 23], &[0..10, 10..20, 20..23]),
            (&[60, 60, 10, 200], &[0..1, 1..3, 3..4]),
            (&[50, 50, 1], &[0..2, 2..3]),
        ];
        for (sizes, want) in cases {
            assert_eq!(pack(sizes, 10, 100), want, "{sizes:?}");
        }
    }
}

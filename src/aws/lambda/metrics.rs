//! One CloudWatch Embedded Metric Format (EMF) document per invocation.
//!
//! A JSON line on standard output with an `_aws` block becomes metrics in the `geotrail`
//! namespace, with no PutMetricData calls (no latency, no extra IAM, no cost per call).
//! Skip reasons are separate metrics (`Skipped.private_ip`, ...) rather than a dimension:
//! one EMF document can give a dimension only one value.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pipeline::SkipCounts;

pub const NAMESPACE: &str = "geotrail";

/// Counts over one invocation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationMetrics {
    /// Objects named by the invocation's notifications.
    pub objects: u64,
    /// Not read: digest files, objects deleted since their event.
    pub objects_skipped: u64,
    /// Read with faults (malformed records, a gzip bomb) or not read at all.
    pub objects_failed: u64,
    /// Failed in a way a retry can fix: left for Lambda or SQS to redeliver.
    pub objects_retried: u64,
    /// Refused past the decoded-size limit (also in `objects_failed`).
    pub objects_too_large: u64,
    /// Records refused for their size (the object is in `objects_failed`).
    pub records_too_large: u64,
    pub events: u64,
    pub skipped: SkipCounts,
    pub findings: u64,
    pub state_conflicts: u64,
    /// Subjects whose stored state is unreadable, left unjudged (their objects are also
    /// in `objects_failed`).
    pub subjects_quarantined: u64,
    /// Objects sent to the dead-letter queue for a person to redrive.
    pub objects_dead_lettered: u64,
    pub duration_ms: u64,
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "_aws")]
    aws: Metadata<'a>,
    #[serde(rename = "FunctionName")]
    function_name: &'a str,
    #[serde(flatten)]
    values: BTreeMap<String, u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata<'a> {
    timestamp: u64,
    #[serde(rename = "CloudWatchMetrics")]
    cloudwatch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: [[&'a str; 1]; 1],
    metrics: Vec<MetricDefinition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDefinition {
    name: String,
    unit: &'static str,
}

impl InvocationMetrics {
    /// The EMF document, one line, dimensioned by function so several stacks can share
    /// an account. `timestamp_ms`: Unix epoch milliseconds.
    pub fn to_emf(&self, function_name: &str, timestamp_ms: u64) -> String {
        let mut values = BTreeMap::new();
        let mut metrics = Vec::new();
        let mut put = |name: String, unit: &'static str, value: u64| {
            metrics.push(MetricDefinition {
                name: name.clone(),
                unit,
            });
            values.insert(name, value);
        };
        put("Objects".into(), "Count", self.objects);
        put("ObjectsSkipped".into(), "Count", self.objects_skipped);
        put("ObjectsFailed".into(), "Count", self.objects_failed);
        put("ObjectsRetried".into(), "Count", self.objects_retried);
        put("ObjectsTooLarge".into(), "Count", self.objects_too_large);
        put("RecordsTooLarge".into(), "Count", self.records_too_large);
        put("Events".into(), "Count", self.events);
        put("Skipped".into(), "Count", self.skipped.total());
        for (reason, n) in self.skipped.iter() {
            put(format!("Skipped.{reason}"), "Count", n);
        }
        put("Findings".into(), "Count", self.findings);
        put("StateConflicts".into(), "Count", self.state_conflicts);
        put(
            "SubjectsQuarantined".into(),
            "Count",
            self.subjects_quarantined,
        );
        put(
            "ObjectsDeadLettered".into(),
            "Count",
            self.objects_dead_lettered,
        );
        put("DurationMs".into(), "Milliseconds", self.duration_ms);
        let document = Document {
            aws: Metadata {
                timestamp: timestamp_ms,
                cloudwatch_metrics: [Directive {
                    namespace: NAMESPACE,
                    dimensions: [["FunctionName"]],
                    metrics,
                }],
            },
            function_name,
            values,
        };
        serde_json::to_string(&document)
            .expect("an EMF document of strings and integers serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Parsed {
        #[serde(rename = "_aws")]
        aws: ParsedAws,
        #[serde(rename = "FunctionName")]
        function_name: String,
        #[serde(flatten)]
        values: BTreeMap<String, u64>,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ParsedAws {
        timestamp: u64,
        #[serde(rename = "CloudWatchMetrics")]
        cloudwatch_metrics: Vec<ParsedDirective>,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ParsedDirective {
        namespace: String,
        dimensions: Vec<Vec<String>>,
        metrics: Vec<ParsedMetric>,
    }

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ParsedMetric {
        name: String,
        unit: String,
    }

    #[test]
    fn emf_document_declares_every_value_it_carries() {
        let mut skipped = SkipCounts::default();
        skipped.add_n("private_ip", 3);
        skipped.add_n("aws_service", 2);
        let m = InvocationMetrics {
            objects: 2,
            objects_failed: 1,
            events: 120,
            skipped,
            findings: 1,
            state_conflicts: 4,
            duration_ms: 35,
            ..InvocationMetrics::default()
        };
        let line = m.to_emf("geotrail-fn", 1_735_689_600_000);
        assert!(!line.contains('\n'), "one line per document");
        let doc: Parsed = serde_json::from_str(&line).unwrap();
        assert_eq!(doc.aws.timestamp, 1_735_689_600_000);
        assert_eq!(doc.function_name, "geotrail-fn");
        let d = &doc.aws.cloudwatch_metrics[0];
        assert_eq!(
            (d.namespace.as_str(), d.dimensions.clone()),
            ("geotrail", vec![vec!["FunctionName".to_owned()]])
        );
        for metric in &d.metrics {
            assert!(
                doc.values.contains_key(&metric.name),
                "declared metric {} has a value",
                metric.name
            );
        }
        assert_eq!(
            d.metrics.len(),
            doc.values.len(),
            "every value is a declared metric"
        );
        let want = [
            ("Events", 120),
            ("Skipped", 5),
            ("Skipped.private_ip", 3),
            ("Skipped.aws_service", 2),
            ("Findings", 1),
            ("StateConflicts", 4),
            ("ObjectsFailed", 1),
            ("DurationMs", 35),
        ];
        for (name, value) in want {
            assert_eq!(doc.values.get(name), Some(&value), "metric {name}");
        }
        let unit = |n: &str| {
            d.metrics
                .iter()
                .find(|m| m.name == n)
                .map(|m| m.unit.clone())
        };
        assert_eq!(unit("DurationMs").as_deref(), Some("Milliseconds"));
    }

    #[test]
    fn the_templates_failed_objects_alarm_watches_a_metric_this_emits() {
        // The alarm names the metric by string: a rename here would silence it.
        let template = include_str!("../../../template.yaml");
        let alarm = template
            .split("FailedObjectsAlarm:")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("template.yaml has a FailedObjectsAlarm");
        let line = InvocationMetrics::default().to_emf("f", 0);
        let doc: Parsed = serde_json::from_str(&line).unwrap();
        assert!(
            alarm.contains(&format!("Namespace: {NAMESPACE}\n")),
            "{alarm}"
        );
        let metric = alarm
            .lines()
            .find_map(|l| l.trim().strip_prefix("MetricName: "))
            .expect("the alarm names a metric");
        assert!(doc.values.contains_key(metric), "{metric} is not emitted");
        assert!(alarm.contains("Name: FunctionName"), "{alarm}");
    }
}

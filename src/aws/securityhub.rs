//! `SecurityHubNotifier`: findings imported into AWS Security Hub as ASFF
//! ([`crate::finding::asff`]), through the account's custom integration
//! (`product/ACCOUNT/default`).
//!
//! The ASFF `Id` is the finding id, so an import retried after a failure updates the
//! finding Security Hub holds instead of adding one. `BatchImportFindings` takes at most
//! 100 findings a call and answers 200 with per-finding failures (`FailedFindings`): those
//! on the service's side are retried with backoff, those it refuses fail the publish,
//! naming the finding (see [`super::batch`]).

use aws_sdk_securityhub::types::{
    Action, ActionRemoteIpDetails, AwsApiCallAction, AwsIamAccessKeyDetails, AwsSecurityFinding,
    City, Country, FindingProviderFields, FindingProviderSeverity, GeoLocation,
    IpOrganizationDetails, Network, NetworkDirection, Partition, Recommendation, RecordState,
    Remediation, Resource, ResourceDetails, Severity, SeverityLabel, Workflow, WorkflowStatus,
};
use aws_sdk_securityhub::Client;

use super::backoff::Backoff;
use super::batch::{call_failed, is_retriable_code, send_with_retries};
use super::batch::{AttemptError, EntryFailure};
use crate::finding::asff::{self, AsffError, AsffFinding, AsffProduct};
use crate::finding::Finding;
use crate::notify::{Notifier, NotifyError};

/// `BatchImportFindings` takes at most 100 findings.
pub const IMPORT_BATCH_MAX_FINDINGS: usize = 100;

#[derive(Debug, Clone)]
pub struct SecurityHubNotifier {
    client: Client,
    product: AsffProduct,
    backoff: Backoff,
}

impl SecurityHubNotifier {
    /// Imports into `product_arn`: `arn:PARTITION:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`
    /// for the account's own findings.
    pub fn new(client: Client, product_arn: &str) -> Result<SecurityHubNotifier, AsffError> {
        Ok(SecurityHubNotifier {
            client,
            product: AsffProduct::parse(product_arn)?,
            backoff: Backoff::default(),
        })
    }

    /// Replaces the retry policy for throttled calls and failed findings.
    pub fn with_backoff(mut self, backoff: Backoff) -> SecurityHubNotifier {
        self.backoff = backoff;
        self
    }

    pub fn product_arn(&self) -> &str {
        &self.product.product_arn
    }

    fn name(&self) -> String {
        format!("Security Hub product {}", self.product.product_arn)
    }

    async fn import(
        &self,
        batch: &[(AsffFinding, AwsSecurityFinding)],
        indices: Vec<usize>,
    ) -> Result<Vec<EntryFailure>, AttemptError> {
        let findings: Vec<AwsSecurityFinding> = indices
            .iter()
            .filter_map(|&i| batch.get(i).map(|(_, sdk)| sdk.clone()))
            .collect();
        let index_of = |id: &str| {
            indices
                .iter()
                .copied()
                .find(|&i| batch.get(i).is_some_and(|(a, _)| a.id == id))
        };
        match self
            .client
            .batch_import_findings()
            .set_findings(Some(findings))
            .send()
            .await
        {
            Ok(output) => {
                let mut failures: Vec<EntryFailure> = output
                    .failed_findings()
                    .iter()
                    .map(|f| {
                        let id = f.id().unwrap_or_default();
                        let code = f.error_code().unwrap_or("(no code)");
                        EntryFailure {
                            index: index_of(id),
                            reported: id.to_owned(),
                            code: code.to_owned(),
                            message: f.error_message().map(str::to_owned),
                            retriable: is_retriable_code(code),
                        }
                    })
                    .collect();
                // A count of failures the list does not name is still a loss.
                let unnamed = output.failed_count().unwrap_or(0).max(0) as usize;
                if unnamed > failures.len() {
                    failures.push(EntryFailure {
                        index: None,
                        reported: format!("{} unnamed", unnamed - failures.len()),
                        code: "FailedCount".to_owned(),
                        message: Some(format!(
                            "FailedCount {unnamed} but {} FailedFindings",
                            output.failed_findings().len()
                        )),
                        retriable: false,
                    });
                }
                Ok(failures)
            }
            Err(err) => {
                let ids: Vec<&str> = indices
                    .iter()
                    .filter_map(|&i| batch.get(i).map(|(a, _)| a.id.as_str()))
                    .collect();
                Err(call_failed(self.name(), "BatchImportFindings", &ids, err))
            }
        }
    }
}

impl Notifier for SecurityHubNotifier {
    async fn publish(&self, findings: &[Finding]) -> Result<(), NotifyError> {
        let now = crate::clock::epoch_ms_now();
        let mut entries = Vec::with_capacity(findings.len());
        for finding in findings {
            let asff =
                asff::to_asff(finding, &self.product, now).map_err(|e| NotifyError::Backend {
                    notifier: self.name(),
                    message: format!("finding {} cannot be imported", finding.finding_id),
                    source: Some(Box::new(e)),
                })?;
            let sdk = to_sdk(&asff);
            entries.push((asff, sdk));
        }
        for batch in entries.chunks(IMPORT_BATCH_MAX_FINDINGS) {
            let ids: Vec<&str> = batch.iter().map(|(a, _)| a.id.as_str()).collect();
            send_with_retries(
                &self.name(),
                "BatchImportFindings",
                &ids,
                &self.backoff,
                |indices| self.import(batch, indices),
                tokio::time::sleep,
            )
            .await?;
        }
        Ok(())
    }
}

/// The ASFF finding in the SDK's types: a move, field by field, of what
/// [`asff::to_asff`] decided.
pub fn to_sdk(a: &AsffFinding) -> AwsSecurityFinding {
    let severity = Severity::builder()
        .label(SeverityLabel::from(a.severity.label.as_str()))
        .original(&a.severity.original)
        .build();
    let resources: Vec<Resource> = a
        .resources
        .iter()
        .map(|r| {
            let details = r.details.as_ref().map(|d| {
                let k = &d.aws_iam_access_key;
                ResourceDetails::builder()
                    .aws_iam_access_key(
                        AwsIamAccessKeyDetails::builder()
                            .access_key_id(&k.access_key_id)
                            .set_account_id(k.account_id.clone())
                            .set_principal_name(k.principal_name.clone())
                            .set_principal_type(k.principal_type.clone())
                            .build(),
                    )
                    .build()
            });
            Resource::builder()
                .r#type(&r.kind)
                .id(&r.id)
                .partition(Partition::from(r.partition.as_str()))
                .set_region(r.region.clone())
                .set_details(details)
                .build()
        })
        .collect();
    let network = a.network.as_ref().map(|n| {
        Network::builder()
            .direction(NetworkDirection::from(n.direction.as_str()))
            .set_source_ipv4(n.source_ip_v4.clone())
            .set_source_ipv6(n.source_ip_v6.clone())
            .build()
    });
    let action = a.action.as_ref().map(|action| {
        let call = &action.aws_api_call_action;
        let remote = call.remote_ip_details.as_ref().map(|ip| {
            ActionRemoteIpDetails::builder()
                .set_ip_address_v4(ip.ip_address_v4.clone())
                .set_city(
                    ip.city
                        .as_ref()
                        .map(|c| City::builder().city_name(&c.city_name).build()),
                )
                .set_country(ip.country.as_ref().map(|c| {
                    Country::builder()
                        .set_country_code(c.country_code.clone())
                        .set_country_name(c.country_name.clone())
                        .build()
                }))
                .set_geo_location(
                    ip.geo_location
                        .as_ref()
                        .map(|g| GeoLocation::builder().lon(g.lon).lat(g.lat).build()),
                )
                .set_organization(ip.organization.as_ref().map(|o| {
                    IpOrganizationDetails::builder()
                        .set_asn(o.asn)
                        .set_asn_org(o.asn_org.clone())
                        .build()
                }))
                .build()
        });
        Action::builder()
            .action_type(&action.action_type)
            .aws_api_call_action(
                AwsApiCallAction::builder()
                    .set_api(call.api.clone())
                    .set_service_name(call.service_name.clone())
                    .caller_type(&call.caller_type)
                    .set_remote_ip_details(remote)
                    .set_first_seen(call.first_seen.clone())
                    .set_last_seen(call.last_seen.clone())
                    .build(),
            )
            .build()
    });
    let remediation = a.remediation.as_ref().map(|r| {
        Remediation::builder()
            .recommendation(
                Recommendation::builder()
                    .text(&r.recommendation.text)
                    .build(),
            )
            .build()
    });
    AwsSecurityFinding::builder()
        .schema_version(&a.schema_version)
        .id(&a.id)
        .product_arn(&a.product_arn)
        .product_name(&a.product_name)
        .company_name(&a.company_name)
        .generator_id(&a.generator_id)
        .aws_account_id(&a.aws_account_id)
        .set_types(Some(a.types.clone()))
        .first_observed_at(&a.first_observed_at)
        .last_observed_at(&a.last_observed_at)
        .created_at(&a.created_at)
        .updated_at(&a.updated_at)
        .severity(severity)
        .title(&a.title)
        .description(&a.description)
        .set_remediation(remediation)
        .set_source_url(a.source_url.clone())
        .set_product_fields(Some(a.product_fields.clone().into_iter().collect()))
        .set_resources(Some(resources))
        .set_network(network)
        .set_action(action)
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(
                    FindingProviderSeverity::builder()
                        .label(SeverityLabel::from(
                            a.finding_provider_fields.severity.label.as_str(),
                        ))
                        .original(&a.finding_provider_fields.severity.original)
                        .build(),
                )
                .set_types(Some(a.finding_provider_fields.types.clone()))
                .build(),
        )
        .workflow(
            Workflow::builder()
                .status(WorkflowStatus::from(a.workflow.status.as_str()))
                .build(),
        )
        .record_state(RecordState::from(a.record_state.as_str()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::render::samples::one_finding_per_rule;

    const PRODUCT_ARN: &str =
        "arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default";

    #[test]
    fn the_sdk_finding_carries_every_required_attribute_and_known_enums() {
        // The SDK's builders accept a finding without its required attributes; the
        // service would refuse it. The same list as the ASFF module's test, on the SDK side.
        let product = AsffProduct::parse(PRODUCT_ARN).unwrap();
        for f in one_finding_per_rule() {
            let a = asff::to_asff(&f, &product, 1_689_033_600_000).unwrap();
            let s = to_sdk(&a);
            let required = [
                ("AwsAccountId", s.aws_account_id()),
                ("CreatedAt", s.created_at()),
                ("Description", s.description()),
                ("GeneratorId", s.generator_id()),
                ("Id", s.id()),
                ("ProductArn", s.product_arn()),
                ("SchemaVersion", s.schema_version()),
                ("Title", s.title()),
                ("UpdatedAt", s.updated_at()),
            ];
            for (name, value) in required {
                assert!(value.is_some_and(|v| !v.is_empty()), "{}: {name}", f.rule);
            }
            assert_eq!(s.id(), Some(f.finding_id.as_str()));
            assert!(!s.types().is_empty(), "{}: Types", f.rule);
            assert!(!s.resources().is_empty(), "{}: Resources", f.rule);
            for r in s.resources() {
                assert!(
                    r.r#type().is_some() && r.id().is_some(),
                    "{}: {r:?}",
                    f.rule
                );
                assert_eq!(r.partition(), Some(&Partition::Aws));
            }
            let label = s
                .severity()
                .and_then(|s| s.label())
                .expect("Severity.Label");
            assert!(
                SeverityLabel::values().contains(&label.as_str()),
                "{}: {label:?}",
                f.rule
            );
            assert_eq!(
                s.workflow().and_then(|w| w.status()),
                Some(&WorkflowStatus::New)
            );
            assert_eq!(s.record_state(), Some(&RecordState::Active));
            assert_eq!(
                s.product_fields()
                    .and_then(|p| p.get("geotrail/finding_id"))
                    .map(String::as_str),
                Some(f.finding_id.as_str())
            );
            let action = s.action().and_then(|a| a.aws_api_call_action());
            assert!(
                action.is_some_and(|c| c.remote_ip_details().is_some()),
                "{}",
                f.rule
            );
        }
    }
}

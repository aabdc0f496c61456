//! The Lambda function: `cargo lambda build` packages this binary as `bootstrap`.
//!
//! Everything an invocation needs is built here, once per execution environment, and
//! borrowed by every invocation: configuration (errors name the variable), SDK clients
//! from `aws-config` defaults (`AWS_ENDPOINT_URL` points them at an emulator), the GeoIP
//! databases, the policy.

use std::sync::Arc;

use anyhow::Context as _;
use geotrail::aws::lambda::config::LambdaConfig;
use geotrail::aws::lambda::dead_letter::DeadLetterQueue;
use geotrail::aws::lambda::event::Invocation;
use geotrail::aws::lambda::{clients, Handler};
use geotrail::aws::{EventBridgeNotifier, SecurityHubNotifier};
use geotrail::geo::GeoDb;
use lambda_runtime::{service_fn, LambdaEvent};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread drives the I/O; the CPU work of each object runs on the blocking pool.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    // JSON lines when the function's LoggingConfig says so (AWS_LAMBDA_LOG_FORMAT=JSON).
    lambda_runtime::tracing::init_default_subscriber();

    let handler = match build().await {
        Ok(handler) => handler,
        Err(err) => {
            // A configuration error ends the cold start; the message is in the log.
            tracing::error!(error = format!("{err:#}"), "geotrail cannot start");
            return Err(err.into());
        }
    };
    let handler = &handler;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Invocation>| async move {
            let request_id = event.context.request_id;
            handler
                .handle_request(event.payload, Some(request_id.as_str()))
                .await
        },
    ))
    .await
}

async fn build() -> anyhow::Result<Handler> {
    let config = LambdaConfig::from_env(|name| std::env::var(name).ok())?;
    let geo = GeoDb::open(&config.geoip, config.geoip_asn.as_deref())
        .with_context(|| format!("opening the GeoIP database {}", config.geoip.display()))?;
    tracing::info!(
        geoip = config.geoip.display().to_string(),
        database_type = geo.info().database_type.as_str(),
        build_epoch = geo.info().build_epoch,
        table = config.table.as_str(),
        topic_arn = config.topic_arn.as_str(),
        security_hub_product_arn = config.security_hub_product_arn.as_deref(),
        event_bus = config.event_bus.as_deref(),
        "geotrail ready"
    );
    let sdk = aws_config::load_from_env().await;
    let (s3, dynamodb, sns) = clients(&sdk);
    let mut handler = Handler::new(&config, Arc::new(geo), s3, dynamodb, sns);
    if let Some(arn) = &config.security_hub_product_arn {
        let client = aws_sdk_securityhub::Client::new(&sdk);
        handler = handler.with_security_hub(
            SecurityHubNotifier::new(client, arn)
                .with_context(|| format!("importing findings into Security Hub as {arn}"))?,
        );
    }
    if let Some(bus) = &config.event_bus {
        let client = aws_sdk_eventbridge::Client::new(&sdk);
        handler = handler.with_event_bus(EventBridgeNotifier::new(client, bus));
    }
    Ok(match &config.dead_letter_queue_url {
        Some(url) => {
            handler.with_dead_letters(DeadLetterQueue::new(aws_sdk_sqs::Client::new(&sdk), url))
        }
        None => handler,
    })
}

//! `DynamoStateStore` against moto's DynamoDB.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use geotrail::aws::dynamo::{create_table, DynamoStateStore, MAX_ITEM_BYTES};
use geotrail::detect::{Call, Place, Point, Stay, SubjectState};
use geotrail::geo::Location;
use geotrail::state::{SaveOutcome, StateError, StateStore};

use super::support::{dynamodb_client, unique_name, RequestCounter};

const TTL_DAYS: i64 = 30;

fn point(t: i64, id: &str) -> Point {
    Point {
        t,
        id: id.into(),
        ip: "203.0.113.10".parse().expect("an address"),
        call: Arc::new(Call::new(
            "DescribeInstances",
            "ec2.amazonaws.com",
            "us-east-1",
        )),
    }
}

/// A subject seen at each `(time, city)` in turn, one stay per sighting.
fn state_of(subject: &str, sightings: &[(i64, &str)]) -> SubjectState {
    let mut state = SubjectState::new(subject);
    for (i, &(t, city)) in sightings.iter().enumerate() {
        let key = format!("XX/-/{city}");
        state.first_seen_ms = state.first_seen_ms.min(t);
        state.latest_ms = state.latest_ms.max(t);
        state
            .stays
            .push(Stay::at(key.clone(), point(t, &format!("ev-{i}"))));
        if !state.places.iter().any(|p| p.key == key) {
            state.places.push(Place {
                key: key.into(),
                location: Location {
                    city: Some(city.to_owned()),
                    latitude: 1.0,
                    longitude: 2.0,
                    ..Location::default()
                }
                .into(),
                first_seen_ms: t,
                last_seen_ms: t,
                count: 1,
            });
        }
    }
    state
}

async fn store_with_table(
    counter: Option<&RequestCounter>,
) -> (DynamoStateStore, aws_sdk_dynamodb::Client) {
    let client = dynamodb_client(counter).await;
    let table = unique_name("geotrail-state");
    create_table(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("creating table {table}: {e:?}"));
    (
        DynamoStateStore::new(client.clone(), table, TTL_DAYS),
        client,
    )
}

#[tokio::test]
async fn state_round_trips_and_a_stale_version_conflicts() {
    let (store, client) = store_with_table(None).await;
    let subject = "AKIAROUNDTRIP0000001".to_owned();

    let loaded = store
        .load(std::slice::from_ref(&subject))
        .await
        .expect("load of an absent subject");
    assert!(
        loaded.is_empty(),
        "a subject never saved is absent: {loaded:?}"
    );

    let first = state_of(&subject, &[(1_688_983_200_000, "Sydney")]);
    assert_eq!(
        store.save(&first, 0).await.expect("first save"),
        SaveOutcome::Saved { version: 1 }
    );
    let loaded = store
        .load(std::slice::from_ref(&subject))
        .await
        .expect("load");
    let got = loaded.get(&subject).expect("saved subject loads");
    assert_eq!((got.version, &got.state), (1, &first));

    let second = state_of(
        &subject,
        &[
            (1_688_983_200_000, "Sydney"),
            (1_688_986_800_000, "Frankfurt"),
        ],
    );
    assert_eq!(
        store.save(&second, 0).await.expect("a second first save"),
        SaveOutcome::Conflict,
        "version 0 means absent"
    );
    assert_eq!(
        store.save(&second, 1).await.expect("save on version 1"),
        SaveOutcome::Saved { version: 2 }
    );

    let stale = state_of(&subject, &[(1_688_990_400_000, "Paris")]);
    assert_eq!(
        store.save(&stale, 1).await.expect("stale save"),
        SaveOutcome::Conflict
    );
    let loaded = store
        .load(std::slice::from_ref(&subject))
        .await
        .expect("load");
    let got = loaded.get(&subject).expect("subject loads");
    assert_eq!(
        (got.version, &got.state),
        (2, &second),
        "a conflicting save changes nothing"
    );

    // The item as an operator sees it in the console: readable JSON, and a TTL from the
    // last sighting.
    let item = client
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(subject.clone()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the item exists");
    let json = item
        .get("state")
        .and_then(|v| v.as_s().ok())
        .expect("state is a string attribute");
    let parsed: SubjectState = serde_json::from_str(json).expect("state is plain JSON");
    assert_eq!(parsed, second);
    let expires_at = item
        .get("expires_at")
        .and_then(|v| v.as_n().ok())
        .expect("expires_at is a number");
    assert_eq!(
        expires_at,
        &(1_688_986_800 + TTL_DAYS * 86_400).to_string(),
        "last sighting + ttl_days"
    );
    assert_eq!(
        item.get("version")
            .and_then(|v| v.as_n().ok())
            .map(String::as_str),
        Some("2")
    );
    assert!(item.get("updated_at").is_some_and(|v| v.as_n().is_ok()));
}

#[tokio::test]
async fn of_two_concurrent_savers_of_one_subject_exactly_one_wins() {
    let (store, _) = store_with_table(None).await;
    for round in 0..10 {
        let subject = format!("AKIARACE{round:012}");
        let a = state_of(&subject, &[(1_000_000, "Sydney")]);
        let b = state_of(&subject, &[(2_000_000, "Frankfurt")]);

        let (ra, rb) = tokio::join!(store.save(&a, 0), store.save(&b, 0));
        let outcomes = [ra.expect("save a"), rb.expect("save b")];
        let winners: Vec<usize> = (0..2)
            .filter(|&i| matches!(outcomes[i], SaveOutcome::Saved { version: 1 }))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}, first saves: {outcomes:?}");
        assert!(
            outcomes.contains(&SaveOutcome::Conflict),
            "round {round}: {outcomes:?}"
        );
        let winner = if winners[0] == 0 { &a } else { &b };
        let loaded = store
            .load(std::slice::from_ref(&subject))
            .await
            .expect("load");
        assert_eq!(
            &loaded[&subject].state, winner,
            "round {round}: the winner's state is stored"
        );

        // Both read version 1 and race again.
        let c = state_of(&subject, &[(3_000_000, "Paris")]);
        let d = state_of(&subject, &[(4_000_000, "Lima")]);
        let (rc, rd) = tokio::join!(store.save(&c, 1), store.save(&d, 1));
        let outcomes = [rc.expect("save c"), rd.expect("save d")];
        let saved = outcomes
            .iter()
            .filter(|o| **o == SaveOutcome::Saved { version: 2 })
            .count();
        assert_eq!(saved, 1, "round {round}, updates: {outcomes:?}");
        assert_eq!(
            store
                .load(std::slice::from_ref(&subject))
                .await
                .expect("load")[&subject]
                .version,
            2
        );
    }
}

#[tokio::test]
async fn loading_250_subjects_takes_three_batch_reads() {
    let counter = RequestCounter::new();
    let (store, _) = store_with_table(Some(&counter)).await;
    let saved: Vec<String> = (0..250).map(|i| format!("AKIABATCH{i:011}")).collect();
    for (i, subject) in saved.iter().enumerate() {
        let state = state_of(subject, &[(1_000_000 + i as i64, "Sydney")]);
        assert_eq!(
            store.save(&state, 0).await.expect("save"),
            SaveOutcome::Saved { version: 1 }
        );
    }

    // Never-saved subjects and duplicates in the request, as an object's subjects come.
    let mut asked = saved.clone();
    asked.extend((0..20).map(|i| format!("AKIAABSENT{i:010}")));
    asked.extend(saved[..30].iter().cloned());
    counter.reset();
    let loaded = store
        .load(&asked)
        .await
        .expect("load of 300 names, 270 distinct");
    assert_eq!(loaded.len(), 250, "every saved subject, no absent one");
    for (i, subject) in saved.iter().enumerate() {
        let got = &loaded[subject];
        assert_eq!(
            (got.version, got.state.last_seen_ms()),
            (1, Some(1_000_000 + i as i64)),
            "{subject}"
        );
    }
    assert_eq!(
        counter.count("BatchGetItem"),
        3,
        "ceil(270 / 100) batch reads: {:?}",
        counter.snapshot()
    );
    assert_eq!(
        counter.total(),
        3,
        "and nothing else: {:?}",
        counter.snapshot()
    );

    counter.reset();
    assert!(store.load(&[]).await.expect("empty load").is_empty());
    assert_eq!(counter.total(), 0, "nothing to load, nothing sent");
}

#[tokio::test]
async fn an_oversized_state_is_refused_before_any_request() {
    let counter = RequestCounter::new();
    let (store, _) = store_with_table(Some(&counter)).await;
    let subject = "AKIATOOLARGE00000001";
    let mut state = state_of(subject, &[(1_000, "Sydney")]);
    let long_id = "e".repeat(1000);
    for i in 0..400 {
        state
            .stays
            .push(Stay::at("XX/-/Sydney", point(2_000 + i, &long_id)));
    }
    counter.reset();
    match store.save(&state, 0).await {
        Err(StateError::TooLarge {
            subject: s,
            bytes,
            limit,
        }) => {
            assert_eq!(s, subject);
            assert!(
                bytes > limit && limit == MAX_ITEM_BYTES,
                "{bytes} > {limit}"
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(
        counter.total(),
        0,
        "refused locally: {:?}",
        counter.snapshot()
    );
}

#[tokio::test]
async fn a_corrupt_item_is_reported_with_its_subject() {
    let (store, client) = store_with_table(None).await;
    let subject = "AKIACORRUPT000000001";
    client
        .put_item()
        .table_name(store.table())
        .set_item(Some(HashMap::from([
            ("pk".to_owned(), AttributeValue::S(subject.to_owned())),
            ("version".to_owned(), AttributeValue::N("3".to_owned())),
            (
                "state".to_owned(),
                AttributeValue::S("{\"subject\": 42".to_owned()),
            ),
        ])))
        .send()
        .await
        .expect("PutItem");
    let err = store
        .load(&[subject.to_owned()])
        .await
        .expect_err("corrupt state");
    assert!(
        matches!(&err, StateError::Corrupt { subject: s, .. } if s == subject),
        "{err:?}"
    );
    assert!(!err.is_transient());

    // Loaded each on its own, the corrupt item is reported by key and the others load.
    let good = state_of("AKIAGOODNEIGHBOUR001", &[(1_000, "Lima")]);
    store.save(&good, 0).await.expect("save the neighbour");
    let loaded = store
        .load_each(&[
            subject.to_owned(),
            good.subject.clone(),
            "AKIANEVERSAVED000001".to_owned(),
        ])
        .await
        .expect("a corrupt item does not fail the load");
    assert_eq!(loaded.states.len(), 1, "{loaded:?}");
    assert_eq!(loaded.states[&good.subject].state, good);
    assert_eq!(loaded.corrupt.len(), 1, "{loaded:?}");
    let (key, err) = &loaded.corrupt[0];
    assert_eq!(key, subject);
    assert!(
        matches!(err, StateError::Corrupt { subject: s, .. } if s == subject),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_table_is_a_backend_error_naming_it() {
    let client = dynamodb_client(None).await;
    let table = unique_name("geotrail-missing");
    let store = DynamoStateStore::new(client, table.clone(), TTL_DAYS);
    let err = store
        .load(&["AKIANOTABLE000000001".to_owned()])
        .await
        .expect_err("no table");
    assert!(matches!(err, StateError::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("table {table}")), "{err}");
    let err = store
        .save(&state_of("AKIANOTABLE000000001", &[(1, "Lima")]), 0)
        .await
        .expect_err("no table");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("table {table}")) && msg.contains("AKIANOTABLE000000001"),
        "{msg}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the SDK error is kept as the source"
    );
}

#[tokio::test]
async fn create_table_is_idempotent_and_enables_ttl_on_expires_at() {
    let client = dynamodb_client(None).await;
    let table = unique_name("geotrail-ttl");
    create_table(&client, &table).await.expect("create");
    create_table(&client, &table)
        .await
        .expect("a second create leaves the table as it is");
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("DescribeTimeToLive");
    let description = ttl.time_to_live_description.expect("a TTL description");
    assert_eq!(
        description.time_to_live_status,
        Some(TimeToLiveStatus::Enabled)
    );
    assert_eq!(description.attribute_name.as_deref(), Some("expires_at"));
}

#[tokio::test]
async fn tallies_share_the_table_load_in_batches_and_conflict_on_a_stale_version() {
    use geotrail::detect::tally::{Tally, TallyKey};

    let counter = RequestCounter::new();
    let (store, client) = store_with_table(Some(&counter)).await;
    let keys: Vec<TallyKey> = (0..150)
        .map(|i| TallyKey::command("123456789012", "iam.amazonaws.com", &format!("Call{i}")))
        .collect();
    let mut tallies: Vec<Tally> = keys.iter().map(TallyKey::empty).collect();
    for (i, t) in tallies.iter_mut().enumerate() {
        if let Tally::Command(c) = t {
            c.latest_ms = 1_741_564_800_000 + i as i64;
        }
    }
    let items: Vec<(&Tally, u64)> = tallies.iter().map(|t| (t, 0)).collect();
    let saved = store.save_tallies(&items).await.expect("save");
    assert!(saved
        .iter()
        .all(|o| *o == SaveOutcome::Saved { version: 1 }));

    // A subject with the same table and a tally never touch: prefixes keep them apart.
    let subject = state_of("AKIATALLYNEIGHBOUR01", &[(1_000_000, "Sydney")]);
    store.save(&subject, 0).await.expect("save subject");

    let mut asked = keys.clone();
    asked.push(TallyKey::error("123456789012", "NeverSeen"));
    counter.reset();
    let loaded = store.load_tallies(&asked).await.expect("load");
    assert_eq!(loaded.len(), 150);
    assert_eq!(loaded[&keys[7]].tally, tallies[7]);
    assert_eq!(
        counter.count("BatchGetItem"),
        2,
        "ceil(151 / 100): {:?}",
        counter.snapshot()
    );

    // A writer that read version 1 after another wrote version 2 loses, and changes
    // nothing.
    let first = store.save_tallies(&[(&tallies[0], 1)]).await.unwrap();
    assert_eq!(first, vec![SaveOutcome::Saved { version: 2 }]);
    let stale = store.save_tallies(&[(&tallies[0], 1)]).await.unwrap();
    assert_eq!(stale, vec![SaveOutcome::Conflict]);

    // The item carries a TTL from the tally's latest event, like a subject's.
    let item = client
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(keys[3].item_key()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(expires, 1_741_564_800 + TTL_DAYS * 86_400);

    // A corrupt tally is named by its key.
    client
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(keys[9].item_key()))
        .item("version", AttributeValue::N("1".into()))
        .item("tally", AttributeValue::S("{not json".into()))
        .send()
        .await
        .unwrap();
    let err = store.load_tallies(&keys[9..10]).await.unwrap_err();
    assert!(err.to_string().contains(&keys[9].item_key()), "{err}");
}

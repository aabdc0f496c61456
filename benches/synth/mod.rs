//! Synthetic CloudTrail for the benchmarks: management events with the shape, size and mix
//! of real ones (IAM users and role sessions, AWS services acting on their own, console
//! calls from `AWS Internal`, VPC endpoint calls from private addresses, access denials),
//! many subjects of very unequal activity, and a few stolen keys used from far away.
//! Deterministic for a seed.
//!
//! Shared by `benches/pipeline.rs` (addresses from the test fixture's networks) and
//! `examples/gen_corpus.rs` (addresses the real DB-IP database places in a city), so the
//! criterion bench and the end-to-end comparison measure the same kind of input.

use std::io::Write;
use std::net::IpAddr;

use geotrail::finding::format_rfc3339_ms;
use geotrail::geo::distance_km;

pub const ACCOUNT: &str = "123456789012";

/// xorshift64*: good enough to vary records, and the same sequence on every machine
/// without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: any seed, 0 included, gives a well-mixed non-zero state.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A city: addresses the GeoIP database places there, and where it is.
#[derive(Debug, Clone)]
pub struct Place {
    pub ips: Vec<IpAddr>,
    pub latitude: f64,
    pub longitude: f64,
}

/// How many subjects, how many of their keys get stolen, and the time the trail covers.
#[derive(Debug, Clone, Copy)]
pub struct TrailSpec {
    pub seed: u64,
    pub subjects: usize,
    pub stolen_keys: usize,
    pub start_ms: i64,
    pub span_ms: i64,
}

enum Principal {
    User {
        name: String,
        principal_id: String,
    },
    Role {
        role: String,
        role_id: String,
        session: String,
    },
}

struct Subject {
    principal: Principal,
    key: String,
    /// One to three addresses in one city: home, office, phone.
    home: Vec<IpAddr>,
    /// A thief's addresses, at least 3,000 km from home, used from `stolen_at_ms` on.
    thief: Option<(Vec<IpAddr>, i64)>,
    agent: &'static str,
}

/// Writes CloudTrail objects for one population of subjects.
pub struct Trail {
    rng: Rng,
    subjects: Vec<Subject>,
}

const USER_AGENTS: &[&str] = &[
    "aws-cli/2.24.10 md/awscrt#0.23.8 ua/2.1 os/macos#24.3.0 md/arch#arm64 lang/python#3.12.9 md/pyimpl#CPython cfg/retry-mode#standard md/installer#source md/prompt#off",
    "Boto3/1.36.21 md/Botocore#1.36.21 ua/2.0 os/linux#6.8.0-1021-aws md/arch#x86_64 lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.36.21",
    "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.84.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.36.0 ua/2.1 os/linux lang/go#1.23.3 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.200.0",
    "aws-sdk-go-v2/1.32.7 ua/2.1 os/linux lang/go#1.23.4 md/GOOS#linux md/GOARCH#amd64 api/sts#1.33.3",
    "aws-sdk-java/2.29.43 Linux/5.10.230-223.885.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.5+11-LTS Java/21.0.5 vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache cfg/retry-mode/legacy",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36",
];

const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
];

const ROLES: &[&str] = &[
    "ci-deploy",
    "app-server",
    "etl-runner",
    "GitHubActions",
    "AWSReservedSSO_Admin_5c1b2a",
    "AWSReservedSSO_ReadOnly_93e0f1",
    "batch-worker",
    "lambda-orders",
];

const SERVICES: &[&str] = &[
    "ec2.amazonaws.com",
    "lambda.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "autoscaling.amazonaws.com",
    "cloudformation.amazonaws.com",
    "config.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
];

impl Trail {
    /// A population over `places`. Each subject lives in one place; the stolen keys are
    /// among the busiest subjects, so their thefts show up in every object size.
    pub fn new(spec: &TrailSpec, places: &[Place]) -> Trail {
        assert!(!places.is_empty(), "a trail needs at least one place");
        assert!(spec.subjects > 0, "a trail needs at least one subject");
        let mut rng = Rng::new(spec.seed);
        let mut subjects = Vec::with_capacity(spec.subjects);
        for i in 0..spec.subjects {
            let home_place = rng.below(places.len());
            let home_ips = &places[home_place].ips;
            let home: Vec<IpAddr> = (0..1 + rng.below(3)).map(|_| *rng.pick(home_ips)).collect();
            let principal = if rng.chance(0.35) {
                let role = *rng.pick(ROLES);
                let session = if role.starts_with("AWSReservedSSO") {
                    format!("{}@example.com", rng.pick(FIRST_NAMES))
                } else {
                    format!("i-0{:016x}", rng.next_u64())
                };
                Principal::Role {
                    role: format!("{role}-{i}"),
                    role_id: key_id(&mut rng, "AROA", 17),
                    session,
                }
            } else {
                Principal::User {
                    name: format!("{}.{i}", rng.pick(FIRST_NAMES)),
                    principal_id: key_id(&mut rng, "AIDA", 17),
                }
            };
            let key = match principal {
                Principal::User { .. } => key_id(&mut rng, "AKIA", 16),
                Principal::Role { .. } => key_id(&mut rng, "ASIA", 16),
            };
            let agent = *rng.pick(USER_AGENTS);
            subjects.push(Subject {
                principal,
                key,
                home,
                thief: None,
                agent,
            });
        }
        // Subject i is picked with density ~ 1/sqrt(i) (see `pick_subject`): the low
        // indices are the busy CI roles and admins whose keys are worth stealing.
        for k in 0..spec.stolen_keys.min(spec.subjects) {
            let i = (3 + k * 7) % spec.subjects;
            let home = &subjects[i].home[0];
            let home_place = places
                .iter()
                .find(|p| p.ips.contains(home))
                .expect("home is a place");
            let far: Vec<&Place> = places
                .iter()
                .filter(|p| {
                    distance_km(
                        p.latitude,
                        p.longitude,
                        home_place.latitude,
                        home_place.longitude,
                    ) > 3000.0
                })
                .collect();
            if far.is_empty() {
                continue;
            }
            let place = *rng.pick(&far);
            let ips = (0..2).map(|_| *rng.pick(&place.ips)).collect();
            let at = spec.start_ms
                + (spec.span_ms as f64 * (0.5 + 0.4 * k as f64 / spec.stolen_keys as f64)) as i64;
            subjects[i].thief = Some((ips, at));
        }
        Trail { rng, subjects }
    }

    /// Keys that a thief uses somewhere in the trail.
    pub fn stolen_keys(&self) -> impl Iterator<Item = &str> {
        self.subjects
            .iter()
            .filter(|s| s.thief.is_some())
            .map(|s| s.key.as_str())
    }

    /// One `{"Records":[...]}` object of at least `target_bytes`, as CloudTrail writes it
    /// (one line, no trailing newline), with event times spread over `[start_ms, end_ms)`
    /// in roughly increasing order.
    pub fn write_object(
        &mut self,
        out: &mut Vec<u8>,
        region: &str,
        start_ms: i64,
        end_ms: i64,
        target_bytes: usize,
    ) {
        let begin = out.len();
        out.extend_from_slice(b"{\"Records\":[");
        let mut first = true;
        while out.len() - begin < target_bytes {
            if !first {
                out.push(b',');
            }
            first = false;
            let progress = (out.len() - begin) as f64 / target_bytes as f64;
            // CloudTrail objects are only roughly in time order: jitter by a few seconds.
            let jitter = self.rng.below(4000) as i64 - 2000;
            let t = (start_ms + ((end_ms - start_ms) as f64 * progress) as i64 + jitter)
                .clamp(start_ms, end_ms - 1);
            // eventTime has whole seconds.
            let t = t - t.rem_euclid(1000);
            self.write_record(out, region, t);
        }
        out.extend_from_slice(b"]}");
    }

    /// Busy subjects far more often than quiet ones, as in real trails.
    fn pick_subject(&mut self) -> usize {
        let u = self.rng.unit();
        ((u * u) * self.subjects.len() as f64) as usize
    }

    fn write_record(&mut self, out: &mut Vec<u8>, region: &str, t: i64) {
        let roll = self.rng.unit();
        if roll < 0.10 {
            self.write_service_assume_role(out, region, t);
        } else if roll < 0.16 {
            self.write_service_linked_call(out, region, t);
        } else {
            self.write_subject_call(out, region, t);
        }
    }

    /// A call by an IAM user or role session, from its own address (or a thief's).
    fn write_subject_call(&mut self, out: &mut Vec<u8>, region: &str, t: i64) {
        let i = self.pick_subject();
        let rng = &mut self.rng;
        let s = &self.subjects[i];
        let ip = match &s.thief {
            Some((ips, at)) if t >= *at && rng.chance(0.5) => rng.pick(ips).to_string(),
            _ => {
                let r = rng.unit();
                if r < 0.03 {
                    // A VPC endpoint: the caller's private address.
                    format!(
                        "10.{}.{}.{}",
                        rng.below(256),
                        rng.below(256),
                        1 + rng.below(254)
                    )
                } else if r < 0.05 {
                    "AWS Internal".to_owned()
                } else {
                    rng.pick(&s.home).to_string()
                }
            }
        };
        let api = *rng.pick(APIS);
        let mut params = Vec::with_capacity(256);
        (api.params)(rng, region, &mut params);
        let denied = rng.chance(0.03);
        let identity = identity_json(&s.principal, &s.key);
        let version = if rng.chance(0.5) { "1.08" } else { "1.09" };
        let request_id = uuid(rng);
        let event_id = uuid(rng);
        let agent = s.agent;
        let host = api.host(region);
        write!(
            out,
            r#"{{"eventVersion":"{version}","userIdentity":{identity},"eventTime":"{time}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"{agent}","#,
            time = format_rfc3339_ms(t),
            source = api.source,
            name = api.name,
        )
        .expect("writing to a Vec cannot fail");
        if denied {
            let action = format!(
                "{}:{}",
                api.source.trim_end_matches(".amazonaws.com"),
                api.name
            );
            let arn = identity_arn(&s.principal);
            write!(
                out,
                r#""errorCode":"AccessDenied","errorMessage":"User: {arn} is not authorized to perform: {action} because no identity-based policy allows the {action} action","#
            )
            .expect("writing to a Vec cannot fail");
        }
        out.extend_from_slice(b"\"requestParameters\":");
        out.extend_from_slice(&params);
        write!(
            out,
            r#","responseElements":null,"requestID":"{request_id}","eventID":"{event_id}","readOnly":{read_only},"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{ACCOUNT}","eventCategory":"Management","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{host}"}}}}"#,
            read_only = api.read_only,
        )
        .expect("writing to a Vec cannot fail");
    }

    /// An AWS service assuming a role for a resource: no access key, a service name for a
    /// source, and the largest records of a trail (the session token).
    fn write_service_assume_role(&mut self, out: &mut Vec<u8>, region: &str, t: i64) {
        let rng = &mut self.rng;
        let service = *rng.pick(SERVICES);
        let role = format!("{}-{}", rng.pick(ROLES), rng.below(500));
        let session = format!("{:016x}", rng.next_u64());
        let key = key_id(rng, "ASIA", 16);
        let token = session_token(rng);
        let role_id = key_id(rng, "AROA", 17);
        let (request_id, event_id, shared) = (uuid(rng), uuid(rng), uuid(rng));
        write!(
            out,
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AWSService","invokedBy":"{service}"}},"eventTime":"{time}","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"{region}","sourceIPAddress":"{service}","userAgent":"{service}","requestParameters":{{"roleArn":"arn:aws:iam::{ACCOUNT}:role/{role}","roleSessionName":"{session}"}},"responseElements":{{"credentials":{{"accessKeyId":"{key}","sessionToken":"{token}","expiration":"Mar 11, 2025, 5:19:44 AM"}},"assumedRoleUser":{{"assumedRoleId":"{role_id}:{session}","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"}}}},"requestID":"{request_id}","eventID":"{event_id}","readOnly":true,"resources":[{{"accountId":"{ACCOUNT}","type":"AWS::IAM::Role","ARN":"arn:aws:iam::{ACCOUNT}:role/{role}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{ACCOUNT}","sharedEventID":"{shared}","eventCategory":"Management"}}"#,
            time = format_rfc3339_ms(t),
        )
        .expect("writing to a Vec cannot fail");
    }

    /// A service-linked role acting for the account (Auto Scaling launching, Config
    /// describing): an assumed role with a service name for a source.
    fn write_service_linked_call(&mut self, out: &mut Vec<u8>, region: &str, t: i64) {
        let rng = &mut self.rng;
        let service = *rng.pick(SERVICES);
        let short = service.trim_end_matches(".amazonaws.com");
        let role_id = key_id(rng, "AROA", 17);
        let api = *rng.pick(APIS);
        let mut params = Vec::with_capacity(256);
        (api.params)(rng, region, &mut params);
        let (request_id, event_id) = (uuid(rng), uuid(rng));
        write!(
            out,
            r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AssumedRole","principalId":"{role_id}:{short}","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/AWSServiceRoleFor{short}/{short}","accountId":"{ACCOUNT}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"{role_id}","arn":"arn:aws:iam::{ACCOUNT}:role/aws-service-role/{service}/AWSServiceRoleFor{short}","accountId":"{ACCOUNT}","userName":"AWSServiceRoleFor{short}"}},"attributes":{{"creationDate":"{time}","mfaAuthenticated":"false"}}}},"invokedBy":"{service}"}},"eventTime":"{time}","eventSource":"{source}","eventName":"{name}","awsRegion":"{region}","sourceIPAddress":"{service}","userAgent":"{service}","requestParameters":"#,
            time = format_rfc3339_ms(t),
            source = api.source,
            name = api.name,
        )
        .expect("writing to a Vec cannot fail");
        out.extend_from_slice(&params);
        write!(
            out,
            r#","responseElements":null,"requestID":"{request_id}","eventID":"{event_id}","readOnly":{read_only},"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{ACCOUNT}","eventCategory":"Management"}}"#,
            read_only = api.read_only,
        )
        .expect("writing to a Vec cannot fail");
    }
}

fn identity_arn(p: &Principal) -> String {
    match p {
        Principal::User { name, .. } => format!("arn:aws:iam::{ACCOUNT}:user/{name}"),
        Principal::Role { role, session, .. } => {
            format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}")
        }
    }
}

fn identity_json(p: &Principal, key: &str) -> String {
    match p {
        Principal::User { name, principal_id } => format!(
            r#"{{"type":"IAMUser","principalId":"{principal_id}","arn":"arn:aws:iam::{ACCOUNT}:user/{name}","accountId":"{ACCOUNT}","accessKeyId":"{key}","userName":"{name}"}}"#
        ),
        Principal::Role {
            role,
            role_id,
            session,
        } => format!(
            r#"{{"type":"AssumedRole","principalId":"{role_id}:{session}","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}","accountId":"{ACCOUNT}","accessKeyId":"{key}","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"{role_id}","arn":"arn:aws:iam::{ACCOUNT}:role/{role}","accountId":"{ACCOUNT}","userName":"{role}"}},"webIdFederationData":{{}},"attributes":{{"creationDate":"2025-03-10T08:00:00Z","mfaAuthenticated":"false"}}}}}}"#
        ),
    }
}

/// `AKIA`, `ASIA`, `AIDA`, `AROA` ids: a prefix and upper-case base-32 characters.
fn key_id(rng: &mut Rng, prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    let mut bits = rng.next_u64();
    for i in 0..len {
        if i == 12 {
            bits = rng.next_u64();
        }
        s.push(ALPHABET[(bits & 31) as usize] as char);
        bits >>= 5;
    }
    s
}

/// A version-4 UUID, as CloudTrail's event and request ids are.
fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    let a = (a & !0xF000) | 0x4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// An STS session token's length and alphabet (about 700 base64 characters).
fn session_token(rng: &mut Rng) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(704);
    s.push_str("IQoJb3JpZ2luX2Vj");
    while s.len() < 700 {
        let mut bits = rng.next_u64();
        for _ in 0..10 {
            s.push(B64[(bits & 63) as usize] as char);
            bits >>= 6;
        }
    }
    s
}

/// One API of the catalogue: where it goes and what its request parameters look like.
#[derive(Clone, Copy)]
struct Api {
    source: &'static str,
    name: &'static str,
    read_only: bool,
    params: fn(&mut Rng, &str, &mut Vec<u8>),
}

impl Api {
    fn host(&self, region: &str) -> String {
        let service = self.source.trim_end_matches(".amazonaws.com");
        match service {
            "iam" | "sts" | "s3" => self.source.to_owned(),
            _ => format!("{service}.{region}.amazonaws.com"),
        }
    }
}

macro_rules! params {
    ($out:expr, $($arg:tt)*) => {
        write!($out, $($arg)*).expect("writing to a Vec cannot fail")
    };
}

const APIS: &[Api] = &[
    Api {
        source: "ec2.amazonaws.com",
        name: "DescribeInstances",
        read_only: true,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"instancesSet":{{"items":[{{"instanceId":"i-0{:016x}"}}]}},"filterSet":{{}}}}"#,
                rng.next_u64() >> 4
            );
        },
    },
    Api {
        source: "ec2.amazonaws.com",
        name: "DescribeSecurityGroups",
        read_only: true,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"securityGroupSet":{{}},"securityGroupIdSet":{{}},"filterSet":{{"items":[{{"name":"vpc-id","valueSet":{{"items":[{{"value":"vpc-0{:016x}"}}]}}}}]}}}}"#,
                rng.next_u64() >> 4
            );
        },
    },
    Api {
        source: "s3.amazonaws.com",
        name: "ListBuckets",
        read_only: true,
        params: |_, _, out| {
            params!(out, r#"{{"Host":"s3.amazonaws.com"}}"#);
        },
    },
    Api {
        source: "s3.amazonaws.com",
        name: "GetBucketPolicy",
        read_only: true,
        params: |rng, region, out| {
            let bucket = format!("data-{}-{region}", rng.below(300));
            params!(
                out,
                r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","policy":""}}"#
            );
        },
    },
    Api {
        source: "sts.amazonaws.com",
        name: "GetCallerIdentity",
        read_only: true,
        params: |_, _, out| {
            out.extend_from_slice(b"null");
        },
    },
    Api {
        source: "sts.amazonaws.com",
        name: "AssumeRole",
        read_only: true,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"roleArn":"arn:aws:iam::{ACCOUNT}:role/{}-{}","roleSessionName":"session-{:012x}","durationSeconds":3600}}"#,
                rng.pick(ROLES),
                rng.below(500),
                rng.next_u64() >> 16
            );
        },
    },
    Api {
        source: "iam.amazonaws.com",
        name: "GetRole",
        read_only: true,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"roleName":"{}-{}"}}"#,
                rng.pick(ROLES),
                rng.below(500)
            );
        },
    },
    Api {
        source: "kms.amazonaws.com",
        name: "Decrypt",
        read_only: true,
        params: |rng, region, out| {
            params!(
                out,
                r#"{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{{"aws:lambda:FunctionArn":"arn:aws:lambda:{region}:{ACCOUNT}:function:orders-{}"}}}}"#,
                rng.below(100)
            );
        },
    },
    Api {
        source: "ssm.amazonaws.com",
        name: "GetParameter",
        read_only: true,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"name":"/prod/app-{}/database-url","withDecryption":true}}"#,
                rng.below(200)
            );
        },
    },
    Api {
        source: "logs.amazonaws.com",
        name: "CreateLogStream",
        read_only: false,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"logGroupName":"/aws/lambda/orders-{}","logStreamName":"2025/03/11/[$LATEST]{:016x}{:016x}"}}"#,
                rng.below(100),
                rng.next_u64(),
                rng.next_u64()
            );
        },
    },
    Api {
        source: "dynamodb.amazonaws.com",
        name: "DescribeTable",
        read_only: true,
        params: |rng, _, out| {
            params!(out, r#"{{"tableName":"orders-{}"}}"#, rng.below(50));
        },
    },
    Api {
        source: "cloudformation.amazonaws.com",
        name: "DescribeStacks",
        read_only: true,
        params: |rng, region, out| {
            params!(
                out,
                r#"{{"stackName":"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/web-{}/{:08x}-0b1c-11f0-9a2e-0a{:010x}"}}"#,
                rng.below(40),
                rng.next_u64() >> 32,
                rng.next_u64() >> 24
            );
        },
    },
    Api {
        source: "ecr.amazonaws.com",
        name: "GetAuthorizationToken",
        read_only: true,
        params: |_, _, out| {
            params!(out, r#"{{"registryIds":["{ACCOUNT}"]}}"#);
        },
    },
    Api {
        source: "monitoring.amazonaws.com",
        name: "GetMetricData",
        read_only: true,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"metricDataQueries":[{{"id":"m1","metricStat":{{"metric":{{"namespace":"AWS/EC2","metricName":"CPUUtilization","dimensions":[{{"name":"InstanceId","value":"i-0{:016x}"}}]}},"period":300,"stat":"Average"}},"returnData":true}}],"startTime":"Mar 11, 2025, 3:00:00 PM","endTime":"Mar 11, 2025, 4:00:00 PM"}}"#,
                rng.next_u64() >> 4
            );
        },
    },
    Api {
        source: "secretsmanager.amazonaws.com",
        name: "GetSecretValue",
        read_only: true,
        params: |rng, region, out| {
            params!(
                out,
                r#"{{"secretId":"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:prod/app-{}/db-AbC12d"}}"#,
                rng.below(200)
            );
        },
    },
    Api {
        source: "lambda.amazonaws.com",
        name: "ListFunctions20150331",
        read_only: true,
        params: |_, _, out| {
            out.extend_from_slice(b"null");
        },
    },
    Api {
        source: "ec2.amazonaws.com",
        name: "RunInstances",
        read_only: false,
        params: |rng, _, out| {
            params!(
                out,
                r#"{{"instancesSet":{{"items":[{{"minCount":1,"maxCount":1}}]}},"launchTemplate":{{"launchTemplateId":"lt-0{:016x}","version":"{}"}},"disableApiTermination":false,"clientToken":"fleet-{:016x}"}}"#,
                rng.next_u64() >> 4,
                1 + rng.below(9),
                rng.next_u64()
            );
        },
    },
];

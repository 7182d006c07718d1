//! Interop: an independent Diameter stack, Erlang/OTP's `diameter`, talks to our peer layer
//! over TCP on 127.0.0.1, in both directions.
//!
//! The OTP side is `tests/otp/otp_peer.escript`, which compiles the RFC 4006 dictionary
//! (`shared/otp/dcca_rfc4006.dia`) at start into a scratch directory, and prints
//! machine-readable lines (`EVENT`, `STATS`, `DWR`, `LISTENING`, `RESULT`, `FAIL`);
//! [`testkit::otp::OtpPeer`] runs it (the pdf's interop test runs the same escript).
//!
//! - [`otp_client_talks_to_our_server`]: OTP connects to our [`Server`]: CER/CEA, 50 CCRs in
//!   5 concurrent sessions (INITIAL, 8 UPDATE with Used-Service-Unit in MSCC, TERMINATION),
//!   a DWR from OTP's watchdog that our core answers, and DPR/DPA when OTP removes its
//!   transport. Both sides check every message they got.
//! - [`our_client_talks_to_otp_server`]: our [`Client`] connects to OTP: CER/CEA, 50 CCRs sent
//!   at once, a DWR from our watchdog (Tw 6 s) that OTP answers, and DPR (REBOOTING)/DPA when
//!   we close.
//!
//! Erlang/OTP is required: the tests fail, rather than skip, when `escript` is missing.
//! `scripts/test` installs it (erlang-base, erlang-diameter, erlang-dev; see
//! `shared/README.md`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocol::dictionary::{
    CcRequestType, DisconnectCause, MultipleServicesIndicator, SubscriptionIdType, TerminationCause,
};
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, HopByHopId};
use protocol::messages::{Cca, Ccr, MultipleServicesCreditControl, ServiceUnit, SubscriptionId};
use protocol::peer::{DownReason, EndToEndIds, Node, PeerConfig};
use protocol::result_code::ResultCode;
use protocol::transport::{
    Client, ClientOptions, Connection, ConnectionEvent, Handler, Incoming, Server,
};
use smallvec::{smallvec, SmallVec};
use testkit::otp::{Fields, OtpPeer};

const OTP_CLIENT_HOST: &str = "otp-client.example.org";
const OTP_SERVER_HOST: &str = "otp-server.example.org";
const OTP_REALM: &str = "example.org";
const OTP_PRODUCT: &str = "OTP diameter interop peer";
const OUR_SERVER_HOST: &str = "pdf-interop.example.net";
const OUR_CLIENT_HOST: &str = "gw-interop.example.net";
const OUR_REALM: &str = "example.net";
const SERVICE_CONTEXT: &str = "32251@3gpp.org";
const RATING_GROUP: u32 = 10;

/// What OTP's client sends: SESSIONS sessions of INITIAL, UPDATES x UPDATE, TERMINATION.
const SESSIONS: u32 = 5;
const UPDATES: u32 = 8;
const OTP_REQUESTS: usize = (SESSIONS * (UPDATES + 2)) as usize;

/// What our client sends to OTP's server, all at once.
const OUR_SESSIONS: u32 = 10;
const OUR_UPDATES: u32 = 3;
const OUR_REQUESTS: usize = (OUR_SESSIONS * (OUR_UPDATES + 2)) as usize;

/// OTP connects to our server, runs 50 CCRs, lets its watchdog probe us and leaves with DPR.
#[test]
fn otp_client_talks_to_our_server() {
    let runtime = runtime();
    let pdf = Arc::new(PdfHandler::default());
    let mut config = PeerConfig::new(OUR_SERVER_HOST, OUR_REALM);
    config.product_name = "diameter-suite interop".to_owned();
    // Tw stays at its 30 s default, so that OTP's watchdog (Tw 6 s) is the one that probes.
    let node = Node::new(config, EndToEndIds::new(1_700_000_000, 1));
    let server = runtime
        .block_on(Server::bind(
            "127.0.0.1:0".parse().unwrap(),
            node,
            pdf.clone(),
        ))
        .expect("binding 127.0.0.1:0");
    let port = server.local_addr().port().to_string();

    let mut otp = start_otp(
        "client",
        &[&port, &SESSIONS.to_string(), &UPDATES.to_string()],
    );
    let status = otp.wait_exit(Duration::from_secs(35));
    let context = otp.report(&pdf.report());
    assert!(status.success(), "the OTP client failed\n{context}");

    // OTP's own account: every CCA 2001 with the CC-Request-Number echoed (the escript
    // checks each), its DWR answered by our DWA 2001, its DPR answered by our DPA 2001.
    let result = otp.result();
    let expected = [
        ("answers", OTP_REQUESTS),
        ("cca_2001", OTP_REQUESTS),
        ("dpr_sent", 1),
        ("dpa_recv", 1),
        ("dpa_2001", 1),
        ("errors", 0),
    ];
    for (key, value) in expected {
        assert_eq!(result.number(key), value, "RESULT {key}\n{context}");
    }
    for key in ["dwr_sent", "dwa_recv", "dwa_2001"] {
        assert!(
            result.number(key) >= 1,
            "RESULT {key}: OTP's watchdog got no DWA\n{context}"
        );
    }
    assert_eq!(
        result.get("watchdog"),
        "okay",
        "OTP's watchdog state\n{context}"
    );
    assert!(
        otp.stdout()
            .contains(&format!("EVENT up peer={OUR_SERVER_HOST}")),
        "{context}"
    );

    // Our account: the peer, every CCR decoded and as OTP built it, each session in order.
    let down = wait_for(Duration::from_secs(5), || {
        pdf.events().into_iter().find_map(|e| match e {
            ConnectionEvent::Down(reason) => Some(reason),
            _ => None,
        })
    });
    let context = otp.report(&pdf.report());
    let events = pdf.events();
    match events.first() {
        Some(ConnectionEvent::Up(info)) => {
            assert_eq!(info.origin_host, OTP_CLIENT_HOST, "{context}");
            assert_eq!(info.origin_realm, OTP_REALM, "{context}");
            assert_eq!(info.product_name, OTP_PRODUCT, "{context}");
            for application in [
                ApplicationId::CREDIT_CONTROL,
                ApplicationId::BASE_ACCOUNTING,
            ] {
                assert!(
                    info.applications.contains(&application),
                    "{application:?} not in common\n{context}"
                );
            }
        }
        other => panic!("first event {other:?}, not Up\n{context}"),
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Suspect | ConnectionEvent::Recovered)),
        "our watchdog complained\n{context}"
    );
    match down {
        Some(DownReason::PeerDisconnected(cause)) => {
            eprintln!("OTP's DPR carried Disconnect-Cause {cause:?}");
        }
        other => panic!("our server saw {other:?}, not the peer's DPR\n{context}"),
    }
    let problems = pdf.problems.lock().unwrap().clone();
    assert!(
        problems.is_empty(),
        "CCRs from OTP:\n{}\n{context}",
        problems.join("\n")
    );
    let seen = pdf.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), OTP_REQUESTS, "CCRs received\n{context}");
    let mut sessions: BTreeMap<String, Vec<(CcRequestType, u32)>> = BTreeMap::new();
    for (session, request_type, number) in seen {
        sessions
            .entry(session)
            .or_default()
            .push((request_type, number));
    }
    assert_eq!(sessions.len(), SESSIONS as usize, "sessions\n{context}");
    let expected: Vec<(CcRequestType, u32)> = (0..UPDATES + 2)
        .map(|n| match n {
            0 => (CcRequestType::INITIAL_REQUEST, n),
            n if n == UPDATES + 1 => (CcRequestType::TERMINATION_REQUEST, n),
            n => (CcRequestType::UPDATE_REQUEST, n),
        })
        .collect();
    for (session, requests) in &sessions {
        assert_eq!(requests, &expected, "session {session}\n{context}");
    }
    runtime.block_on(server.shutdown(DisconnectCause::REBOOTING));
    eprintln!("{context}");
}

/// Our client connects to OTP's server, runs 50 CCRs at once, lets our watchdog probe OTP
/// and leaves with DPR (REBOOTING).
#[test]
fn our_client_talks_to_otp_server() {
    let runtime = runtime();
    let mut otp = start_otp("server", &[]);
    let listening = otp.wait_line("LISTENING ", Duration::from_secs(20));
    let port: u16 = Fields::parse(&listening).number("port").try_into().unwrap();

    let gateway = Arc::new(GatewayHandler::default());
    let mut config = PeerConfig::new(OUR_CLIENT_HOST, OUR_REALM);
    config.watchdog_interval = Duration::from_secs(6);
    let node = Node::new(config, EndToEndIds::new(1_700_000_000, 2));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let options = ClientOptions {
        reconnect: false,
        ..ClientOptions::default()
    };
    let _guard = runtime.enter();
    let client = Client::start(addr, node.clone(), gateway.clone(), options);
    let Some(connection) = runtime.block_on(client.wait_open(Duration::from_secs(10))) else {
        panic!("no connection to OTP\n{}", otp.report(&gateway.report()));
    };
    let peer = connection.peer().expect("open connection has a peer");
    let context = otp.report(&gateway.report());
    assert_eq!(peer.origin_host, OTP_SERVER_HOST, "{context}");
    assert_eq!(peer.origin_realm, OTP_REALM, "{context}");
    assert!(
        peer.applications.contains(&ApplicationId::CREDIT_CONTROL),
        "{context}"
    );
    let up = otp.wait_line("EVENT up ", Duration::from_secs(5));
    assert_eq!(Fields::parse(&up).get("peer"), OUR_CLIENT_HOST, "{context}");

    // 50 CCRs at once: OTP answers each with 2001, the CC-Request-Number echoed, units granted.
    let started = Instant::now();
    let answers = runtime.block_on(futures::future::join_all(
        (0..OUR_SESSIONS)
            .flat_map(|s| (0..OUR_UPDATES + 2).map(move |n| (s, n)))
            .map(|(s, n)| {
                let connection = connection.clone();
                async move { (s, n, exchange(&connection, s, n).await) }
            }),
    ));
    let elapsed = started.elapsed();
    let failures: Vec<String> = answers
        .iter()
        .filter_map(|(s, n, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("session {s} request {n}: {e}"))
        })
        .collect();
    let context = otp.report(&gateway.report());
    assert!(
        failures.is_empty(),
        "CCAs from OTP:\n{}\n{context}",
        failures.join("\n")
    );
    assert_eq!(answers.len(), OUR_REQUESTS);
    eprintln!("{OUR_REQUESTS} CCR/CCA with OTP in {elapsed:?}");

    // Silence: our watchdog (Tw 6 s, jittered to 4-8 s) sends DWR and OTP answers it.
    let dwr = otp.wait_line("DWR recv=", Duration::from_secs(14));
    // The DWA has had ample time to come back by the time we look (one round trip on lo).
    std::thread::sleep(Duration::from_millis(200));
    let context = otp.report(&gateway.report());
    assert!(
        connection.is_open(),
        "connection dropped after {dwr}\n{context}"
    );
    assert!(
        !gateway
            .events()
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Suspect | ConnectionEvent::Down(_))),
        "our watchdog did not get OTP's DWA\n{context}"
    );

    runtime.block_on(client.close(DisconnectCause::REBOOTING));
    assert_eq!(
        connection.down_reason(),
        Some(DownReason::LocalDisconnect(DisconnectCause::REBOOTING)),
        "after our DPR\n{}",
        otp.report(&gateway.report())
    );
    let status = otp.wait_exit(Duration::from_secs(10));
    let context = otp.report(&gateway.report());
    assert!(status.success(), "the OTP server failed\n{context}");
    assert!(
        otp.stdout()
            .contains(&format!("EVENT otp down remote={OUR_CLIENT_HOST}")),
        "{context}"
    );
    let result = otp.result();
    let expected = [
        ("requests", OUR_REQUESTS),
        ("dpr_recv", 1),
        ("dpa_sent", 1),
        ("errors", 0),
    ];
    for (key, value) in expected {
        assert_eq!(result.number(key), value, "RESULT {key}\n{context}");
    }
    for key in ["dwr_recv", "dwa_sent"] {
        assert!(result.number(key) >= 1, "RESULT {key}\n{context}");
    }
    let problems = gateway.problems.lock().unwrap().clone();
    assert!(problems.is_empty(), "{}\n{context}", problems.join("\n"));
    eprintln!("{context}");
}

/// One CCR of session `s`, number `n` (0 INITIAL, last TERMINATION), and checks of its CCA.
async fn exchange(connection: &Connection, s: u32, n: u32) -> Result<(), String> {
    let session_id = format!("{OUR_CLIENT_HOST};1700000000;{s}");
    let msisdn = format!("49170001{s:04}");
    let (request_type, used, requested) = match n {
        0 => (CcRequestType::INITIAL_REQUEST, None, true),
        n if n == OUR_UPDATES + 1 => (CcRequestType::TERMINATION_REQUEST, Some(500), false),
        n => (
            CcRequestType::UPDATE_REQUEST,
            Some(u64::from(n) * 1000),
            true,
        ),
    };
    let mscc = MultipleServicesCreditControl {
        requested_service_unit: requested.then(ServiceUnit::default),
        used_service_units: used
            .map(|octets| {
                smallvec![ServiceUnit {
                    cc_total_octets: Some(octets),
                    cc_time: Some(10),
                    ..ServiceUnit::default()
                }]
            })
            .unwrap_or_default(),
        rating_group: Some(RATING_GROUP),
        ..MultipleServicesCreditControl::default()
    };
    let node = connection.node();
    let ccr = Ccr {
        session_id: &session_id,
        origin_host: &node.config.origin_host,
        origin_realm: &node.config.origin_realm,
        destination_realm: OTP_REALM,
        auth_application_id: ApplicationId::CREDIT_CONTROL.0,
        service_context_id: SERVICE_CONTEXT,
        cc_request_type: request_type,
        cc_request_number: n,
        subscription_ids: smallvec![SubscriptionId {
            subscription_id_type: SubscriptionIdType::END_USER_E164,
            subscription_id_data: &msisdn,
        }],
        termination_cause: (request_type == CcRequestType::TERMINATION_REQUEST)
            .then_some(TerminationCause::LOGOUT),
        multiple_services_indicator: Some(MultipleServicesIndicator::MULTIPLE_SERVICES_SUPPORTED),
        multiple_services_credit_control: smallvec![mscc],
        ..Ccr::default()
    };
    let mut buf = BytesMut::new();
    let envelope = Envelope::request(
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(0),
        node.end_to_end.next(),
    );
    ccr.encode(envelope, &mut buf);
    let answer = connection
        .request(buf.freeze(), Some(Duration::from_secs(5)))
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let view = answer.view();
    let cca = Cca::decode(&view)
        .map_err(|e| format!("CCA did not decode ({e:?}): {}", hex::encode(view.bytes())))?;
    let mut wrong = Vec::new();
    if cca.result_code != ResultCode::SUCCESS {
        wrong.push(format!("Result-Code {:?}", cca.result_code));
    }
    if cca.session_id != session_id {
        wrong.push(format!("Session-Id {:?}", cca.session_id));
    }
    if (cca.cc_request_type, cca.cc_request_number) != (request_type, n) {
        wrong.push(format!(
            "CC-Request-Type/Number {:?}/{}",
            cca.cc_request_type, cca.cc_request_number
        ));
    }
    if cca.origin_host != OTP_SERVER_HOST
        || cca.auth_application_id != ApplicationId::CREDIT_CONTROL.0
    {
        wrong.push(format!(
            "Origin-Host {} Auth-Application-Id {}",
            cca.origin_host, cca.auth_application_id
        ));
    }
    match cca.multiple_services_credit_control.as_slice() {
        [granted]
            if granted.rating_group == Some(RATING_GROUP)
                && granted.result_code == Some(ResultCode::SUCCESS)
                && granted
                    .granted_service_unit
                    .as_ref()
                    .and_then(|g| g.cc_total_octets)
                    .is_some() => {}
        other => wrong.push(format!("MSCC {other:?}")),
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {cca:?}", wrong.join(", ")))
    }
}

/// Our server's application: answers each CCR with a CCA 2001 granting units per MSCC,
/// and records what it saw.
#[derive(Default)]
struct PdfHandler {
    events: Mutex<Vec<ConnectionEvent>>,
    /// (Session-Id, CC-Request-Type, CC-Request-Number) of each CCR, in arrival order.
    seen: Mutex<Vec<(String, CcRequestType, u32)>>,
    problems: Mutex<Vec<String>>,
}

impl PdfHandler {
    fn events(&self) -> Vec<ConnectionEvent> {
        self.events.lock().unwrap().clone()
    }

    fn report(&self) -> String {
        format!(
            "our server: events {:?}; {} CCRs; problems {:?}",
            self.events(),
            self.seen.lock().unwrap().len(),
            self.problems.lock().unwrap()
        )
    }

    /// What OTP's escript puts in each CCR (see `credit_control/4` there).
    fn check(ccr: &Ccr<'_>) -> Vec<String> {
        let mut wrong = Vec::new();
        let n = ccr.cc_request_number;
        if ccr.origin_host != OTP_CLIENT_HOST || ccr.origin_realm != OTP_REALM {
            wrong.push(format!(
                "Origin-Host/Realm {}/{}",
                ccr.origin_host, ccr.origin_realm
            ));
        }
        if ccr.destination_realm != OUR_REALM {
            wrong.push(format!("Destination-Realm {}", ccr.destination_realm));
        }
        if ccr.auth_application_id != 4 || ccr.service_context_id != SERVICE_CONTEXT {
            wrong.push(format!(
                "Auth-Application-Id {} Service-Context-Id {}",
                ccr.auth_application_id, ccr.service_context_id
            ));
        }
        if ccr.event_timestamp.is_none() {
            wrong.push("no Event-Timestamp".to_owned());
        }
        match ccr.subscription_ids.as_slice() {
            [id] if id.subscription_id_type == SubscriptionIdType::END_USER_E164
                && id.subscription_id_data.starts_with("4917000") => {}
            other => wrong.push(format!("Subscription-Id {other:?}")),
        }
        if ccr.multiple_services_indicator
            != Some(MultipleServicesIndicator::MULTIPLE_SERVICES_SUPPORTED)
        {
            wrong.push(format!(
                "Multiple-Services-Indicator {:?}",
                ccr.multiple_services_indicator
            ));
        }
        let used = |octets: u64, time: u32| {
            smallvec![ServiceUnit {
                cc_total_octets: Some(octets),
                cc_time: Some(time),
                ..ServiceUnit::default()
            }]
        };
        let (requested, used, termination): (_, SmallVec<[ServiceUnit; 1]>, _) = match ccr
            .cc_request_type
        {
            CcRequestType::INITIAL_REQUEST => (Some(ServiceUnit::default()), SmallVec::new(), None),
            CcRequestType::UPDATE_REQUEST => (
                Some(ServiceUnit::default()),
                used(1000 * u64::from(n), 10),
                None,
            ),
            _ => (None, used(500, 5), Some(TerminationCause::LOGOUT)),
        };
        let expected = MultipleServicesCreditControl {
            requested_service_unit: requested,
            used_service_units: used,
            rating_group: Some(RATING_GROUP),
            ..MultipleServicesCreditControl::default()
        };
        if ccr.multiple_services_credit_control.as_slice() != std::slice::from_ref(&expected) {
            wrong.push(format!(
                "MSCC {:?}, expected [{expected:?}]",
                ccr.multiple_services_credit_control
            ));
        }
        if ccr.termination_cause != termination {
            wrong.push(format!("Termination-Cause {:?}", ccr.termination_cause));
        }
        wrong
    }
}

impl Handler for PdfHandler {
    fn on_request(&self, connection: &Connection, request: Incoming) {
        let Incoming {
            message,
            peer,
            responder,
        } = request;
        let view = message.view();
        let ccr = match Ccr::decode(&view) {
            Ok(ccr) => ccr,
            Err(error) => {
                self.problems.lock().unwrap().push(format!(
                    "from {}: {error:?} decoding {}",
                    peer.origin_host,
                    hex::encode(view.bytes())
                ));
                responder.reject(error);
                return;
            }
        };
        let wrong = Self::check(&ccr);
        if !wrong.is_empty() {
            self.problems
                .lock()
                .unwrap()
                .push(format!("{}: {}", ccr.session_id, wrong.join(", ")));
        }
        self.seen.lock().unwrap().push((
            ccr.session_id.to_owned(),
            ccr.cc_request_type,
            ccr.cc_request_number,
        ));
        let granted: SmallVec<[MultipleServicesCreditControl; 1]> = ccr
            .multiple_services_credit_control
            .iter()
            .map(|mscc| MultipleServicesCreditControl {
                granted_service_unit: Some(ServiceUnit {
                    cc_total_octets: Some(1_000_000),
                    cc_time: Some(600),
                    ..ServiceUnit::default()
                }),
                rating_group: mscc.rating_group,
                validity_time: Some(60),
                result_code: Some(ResultCode::SUCCESS),
                ..MultipleServicesCreditControl::default()
            })
            .collect();
        let config = &connection.node().config;
        let cca = Cca {
            session_id: ccr.session_id,
            result_code: ResultCode::SUCCESS,
            origin_host: &config.origin_host,
            origin_realm: &config.origin_realm,
            auth_application_id: ApplicationId::CREDIT_CONTROL.0,
            cc_request_type: ccr.cc_request_type,
            cc_request_number: ccr.cc_request_number,
            multiple_services_credit_control: granted,
            ..Cca::default()
        };
        responder.answer_with(|envelope, buf| {
            cca.encode(envelope, buf);
        });
    }

    fn on_event(&self, _: &Connection, event: &ConnectionEvent) {
        self.events.lock().unwrap().push(event.clone());
    }
}

/// Our client's application: OTP's server sends no requests, so any is a problem.
#[derive(Default)]
struct GatewayHandler {
    events: Mutex<Vec<ConnectionEvent>>,
    problems: Mutex<Vec<String>>,
}

impl GatewayHandler {
    fn events(&self) -> Vec<ConnectionEvent> {
        self.events.lock().unwrap().clone()
    }

    fn report(&self) -> String {
        format!(
            "our client: events {:?}; problems {:?}",
            self.events(),
            self.problems.lock().unwrap()
        )
    }
}

impl Handler for GatewayHandler {
    fn on_request(&self, _: &Connection, request: Incoming) {
        let header = request.message.header();
        self.problems
            .lock()
            .unwrap()
            .push(format!("unexpected request from OTP: {header:?}"));
    }

    fn on_event(&self, _: &Connection, event: &ConnectionEvent) {
        self.events.lock().unwrap().push(event.clone());
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Polls `check` every 20 ms until it gives something or `limit` passes.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the escript in `mode` with `args`: the script beside this crate's tests, the
/// dictionary in the shared directory next to the repository.
fn start_otp(mode: &str, args: &[&str]) -> OtpPeer {
    let root = env!("CARGO_MANIFEST_DIR");
    OtpPeer::start(
        Path::new(&format!("{root}/tests/otp/otp_peer.escript")),
        Path::new(&format!("{root}/../../shared/otp/dcca_rfc4006.dia")),
        mode,
        args,
    )
}

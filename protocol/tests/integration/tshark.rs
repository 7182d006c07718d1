//! Interop: an independent decoder (Wireshark's tshark) reads what our typed builders encode.
//!
//! One message of each type is encoded, written as a hex dump, wrapped by `text2pcap` into
//! one TCP segment per message towards port 3868, and dissected by `tshark -T pdml`. Every
//! packet must be Diameter with the command code, R flag and length we meant, carry the AVP
//! values we set (found by their path through Grouped AVPs), and draw no malformed-packet
//! marker and no expert info of severity warning or error beyond the ones a case expects.
//! The reference vectors in `shared/vectors/` (encoded by Erlang/OTP) go through the same
//! harness as a check of the harness itself.
//!
//! tshark and text2pcap are required: the test fails, rather than skips, when they are
//! missing. `scripts/test` installs them (see `shared/README.md`).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command as Process;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::BytesMut;
use protocol::avp::{Address, AvpCode, AvpFlags, DiameterTime};
use protocol::dictionary::{
    AccountingRecordType as RecordType, CcRequestType, DisconnectCause, FinalUnitAction,
    MultipleServicesIndicator, ReAuthRequestType, SubscriptionIdType, TerminationCause,
};
use protocol::encode::MessageWriter;
use protocol::grammar::{Command, Envelope};
use protocol::header::{ApplicationId, CommandCode, CommandFlags, EndToEndId, HopByHopId};
use protocol::message::MessageView;
use protocol::messages::{
    encode_error_answer, Aca, Acr, Asa, Asr, Cca, Ccr, Cea, Cer, Dpa, Dpr, Dwa, Dwr,
    FinalUnitIndication, MultipleServicesCreditControl as Mscc, Raa, Rar, ServiceUnit,
    SubscriptionId,
};
use protocol::result_code::ResultCode;
use smallvec::{smallvec, SmallVec};

/// Wireshark's `PI_WARN` expert severity, as PDML shows it; `PI_ERROR` is above.
const SEVERITY_WARNING: u32 = 0x0060_0000;

const GW_HOST: &str = "gw1.example.net";
const GW_REALM: &str = "example.net";
const OCS_HOST: &str = "ocs1.ocs.example.net";
const OCS_REALM: &str = "ocs.example.net";
const CC_SESSION: &str = "gw1.example.net;1700000000;77;sub-491700000077";
const ACCT_SESSION: &str = "gw1.example.net;1700000000;78";
const MSISDN: &str = "491700000077";
/// An AVP code that no dictionary defines, sent with the M bit to draw 5001.
const UNKNOWN_AVP: u32 = 0x00fe_dcba;

/// One message and what tshark must find in it.
pub(crate) struct Case {
    /// A short name, for failure messages and fuzz seed file names.
    pub(crate) name: &'static str,
    /// The encoded message.
    pub(crate) bytes: Vec<u8>,
    command: u32,
    request: bool,
    /// Lines `path = value`: a field, by its path through Grouped AVPs
    /// (`Multiple-Services-Credit-Control/Granted-Service-Unit/CC-Time`), that must occur at
    /// least once with the value tshark shows.
    expect: String,
    /// Expert infos of severity warning that this message must draw (message prefixes).
    warnings: &'static [&'static str],
}

/// Encodes a typed command into a case. The End-to-End id echoes the Hop-by-Hop id.
fn typed<'a, C: Command<'a>>(name: &'static str, message: &C, hop: u32, expect: String) -> Case {
    let application = match C::COMMAND {
        CommandCode::ACCOUNTING => ApplicationId::BASE_ACCOUNTING,
        CommandCode::CREDIT_CONTROL | CommandCode::ABORT_SESSION | CommandCode::RE_AUTH => {
            ApplicationId::CREDIT_CONTROL
        }
        _ => ApplicationId::COMMON,
    };
    let envelope = Envelope::request(application, HopByHopId(hop), EndToEndId(0x5a5a_0000 | hop));
    let mut buf = BytesMut::new();
    message.encode(envelope, &mut buf);
    let (command, request) = (C::COMMAND.0, C::FLAGS.is_request());
    Case {
        name,
        bytes: buf.to_vec(),
        command,
        request,
        expect,
        warnings: &[],
    }
}

fn units(cc_time: Option<u32>, cc_total_octets: Option<u64>) -> ServiceUnit {
    ServiceUnit {
        cc_time,
        cc_total_octets,
        ..ServiceUnit::default()
    }
}

fn subscriber() -> SmallVec<[SubscriptionId<'static>; 1]> {
    let subscription_id_type = SubscriptionIdType::END_USER_E164;
    smallvec![SubscriptionId {
        subscription_id_type,
        subscription_id_data: MSISDN
    }]
}

fn acr(accounting_record_type: RecordType, accounting_record_number: u32) -> Acr<'static> {
    Acr {
        session_id: ACCT_SESSION,
        origin_host: GW_HOST,
        origin_realm: GW_REALM,
        destination_realm: OCS_REALM,
        accounting_record_type,
        accounting_record_number,
        acct_application_id: Some(3),
        user_name: Some(MSISDN),
        acct_interim_interval: Some(30),
        event_timestamp: Some(DiameterTime::from_unix_seconds(1_700_000_000)),
        subscription_ids: subscriber(),
        rating_group: Some(10),
        ..Acr::default()
    }
}

fn acr_expect(record_type: u32, number: u32) -> String {
    format!(
        "Session-Id = {ACCT_SESSION}
         Origin-Host = {GW_HOST}
         Destination-Realm = {OCS_REALM}
         Accounting-Record-Type = {record_type}
         Accounting-Record-Number = {number}
         Acct-Application-Id = 3
         User-Name = {MSISDN}
         Subscription-Id/Subscription-Id-Type = 0
         Subscription-Id/Subscription-Id-Data = {MSISDN}
         Rating-Group = 10"
    )
}

fn ccr(cc_request_type: CcRequestType, cc_request_number: u32, mscc: Option<Mscc>) -> Ccr<'static> {
    Ccr {
        session_id: CC_SESSION,
        origin_host: GW_HOST,
        origin_realm: GW_REALM,
        destination_realm: OCS_REALM,
        auth_application_id: 4,
        service_context_id: "32251@3gpp.org",
        cc_request_type,
        cc_request_number,
        event_timestamp: Some(DiameterTime::from_unix_seconds(1_700_000_000)),
        subscription_ids: subscriber(),
        multiple_services_indicator: Some(MultipleServicesIndicator::MULTIPLE_SERVICES_SUPPORTED),
        multiple_services_credit_control: mscc.into_iter().collect(),
        ..Ccr::default()
    }
}

fn ccr_expect(request_type: u32, number: u32) -> String {
    format!(
        "Session-Id = {CC_SESSION}
         Origin-Host = {GW_HOST}
         Origin-Realm = {GW_REALM}
         Destination-Realm = {OCS_REALM}
         Auth-Application-Id = 4
         Service-Context-Id = 32251@3gpp.org
         CC-Request-Type = {request_type}
         CC-Request-Number = {number}
         Subscription-Id/Subscription-Id-Type = 0
         Subscription-Id/Subscription-Id-Data = {MSISDN}
         Multiple-Services-Indicator = 1"
    )
}

/// Multiple-Services-Credit-Control for Rating-Group 10 with these requested and used units.
fn mscc(requested: Option<ServiceUnit>, used: Option<ServiceUnit>) -> Option<Mscc> {
    let used_service_units = used.into_iter().collect();
    let rating_group = Some(10);
    Some(Mscc {
        requested_service_unit: requested,
        used_service_units,
        rating_group,
        ..Mscc::default()
    })
}

/// One message of each type the suite sends, then a CCR with an unknown M-bit AVP and the
/// error answer `encode_error_answer` builds for it.
pub(crate) fn messages() -> Vec<Case> {
    let hosts = |ips: &[IpAddr]| ips.iter().map(|&ip| Address::Ip(ip)).collect();
    let (v4, v6): (IpAddr, IpAddr) = (
        [127, 0, 0, 1].into(),
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1].into(),
    );
    let ok = ResultCode::SUCCESS;
    let (gsu, rsu, usu) = (
        "Granted-Service-Unit",
        "Requested-Service-Unit",
        "Used-Service-Unit",
    );
    let m = "Multiple-Services-Credit-Control";
    let mut cases = vec![
        typed(
            "cer",
            &Cer {
                origin_host: GW_HOST,
                origin_realm: GW_REALM,
                host_ip_addresses: hosts(&[v4, v6]),
                product_name: "diameter-suite",
                origin_state_id: Some(1_700_000_000),
                supported_vendor_ids: smallvec![10415],
                auth_application_ids: smallvec![4],
                acct_application_ids: smallvec![3],
                firmware_revision: Some(1),
                ..Cer::default()
            },
            1,
            format!(
                "Origin-Host = {GW_HOST}
                 Origin-Realm = {GW_REALM}
                 Host-IP-Address/Host-IP-Address.addr_family = 1
                 Host-IP-Address/Host-IP-Address.addr_family = 2
                 Vendor-Id = 0
                 Product-Name = diameter-suite
                 Origin-State-Id = 1700000000
                 Supported-Vendor-Id = 10415
                 Auth-Application-Id = 4
                 Acct-Application-Id = 3
                 Firmware-Revision = 1"
            ),
        ),
        typed(
            "cea",
            &Cea {
                result_code: ok,
                origin_host: OCS_HOST,
                origin_realm: OCS_REALM,
                host_ip_addresses: hosts(&[v4]),
                product_name: "diameter-suite-pdf",
                auth_application_ids: smallvec![4],
                ..Cea::default()
            },
            1,
            format!(
                "Result-Code = 2001
                 Origin-Host = {OCS_HOST}
                 Origin-Realm = {OCS_REALM}
                 Product-Name = diameter-suite-pdf
                 Auth-Application-Id = 4"
            ),
        ),
        typed(
            "dwr",
            &Dwr {
                origin_host: GW_HOST,
                origin_realm: GW_REALM,
                origin_state_id: Some(7),
            },
            2,
            format!("Origin-Host = {GW_HOST}\nOrigin-Realm = {GW_REALM}\nOrigin-State-Id = 7"),
        ),
        typed(
            "dwa",
            &Dwa {
                result_code: ok,
                origin_host: OCS_HOST,
                origin_realm: OCS_REALM,
                ..Dwa::default()
            },
            2,
            format!("Result-Code = 2001\nOrigin-Host = {OCS_HOST}"),
        ),
        typed(
            "dpr",
            &Dpr {
                origin_host: GW_HOST,
                origin_realm: GW_REALM,
                disconnect_cause: DisconnectCause::DO_NOT_WANT_TO_TALK_TO_YOU,
            },
            3,
            format!("Origin-Host = {GW_HOST}\nDisconnect-Cause = 2"),
        ),
        typed(
            "dpa",
            &Dpa {
                result_code: ok,
                origin_host: OCS_HOST,
                origin_realm: OCS_REALM,
                ..Dpa::default()
            },
            3,
            format!("Result-Code = 2001\nOrigin-Host = {OCS_HOST}"),
        ),
        typed(
            "acr-start",
            &acr(RecordType::START_RECORD, 0),
            4,
            acr_expect(2, 0),
        ),
        typed(
            "acr-interim",
            &Acr {
                used_service_unit: Some(units(Some(30), Some(1_048_576))),
                ..acr(RecordType::INTERIM_RECORD, 1)
            },
            5,
            acr_expect(3, 1) + &format!("\n{usu}/CC-Time = 30\n{usu}/CC-Total-Octets = 1048576"),
        ),
        typed(
            "acr-stop",
            &Acr {
                used_service_unit: Some(units(Some(12), Some(65536))),
                termination_cause: Some(TerminationCause::LOGOUT),
                ..acr(RecordType::STOP_RECORD, 2)
            },
            6,
            acr_expect(4, 2) + &format!("\n{usu}/CC-Time = 12\nTermination-Cause = 1"),
        ),
        typed(
            "aca",
            &Aca {
                session_id: ACCT_SESSION,
                result_code: ok,
                origin_host: OCS_HOST,
                origin_realm: OCS_REALM,
                accounting_record_type: RecordType::STOP_RECORD,
                accounting_record_number: 2,
                acct_application_id: Some(3),
                ..Aca::default()
            },
            6,
            format!(
                "Session-Id = {ACCT_SESSION}
                 Result-Code = 2001
                 Origin-Host = {OCS_HOST}
                 Accounting-Record-Type = 4
                 Accounting-Record-Number = 2"
            ),
        ),
        typed(
            "ccr-initial",
            &ccr(
                CcRequestType::INITIAL_REQUEST,
                0,
                mscc(Some(units(Some(3600), None)), None),
            ),
            7,
            ccr_expect(1, 0) + &format!("\n{m}/Rating-Group = 10\n{m}/{rsu}/CC-Time = 3600"),
        ),
        typed(
            "ccr-update",
            &ccr(
                CcRequestType::UPDATE_REQUEST,
                1,
                mscc(
                    Some(units(None, Some(10_485_760))),
                    Some(units(Some(120), Some(5_242_880))),
                ),
            ),
            8,
            ccr_expect(2, 1)
                + &format!(
                    "\n{m}/Rating-Group = 10
                     {m}/{rsu}/CC-Total-Octets = 10485760
                     {m}/{usu}/CC-Time = 120
                     {m}/{usu}/CC-Total-Octets = 5242880"
                ),
        ),
        typed(
            "ccr-termination",
            &Ccr {
                termination_cause: Some(TerminationCause::LOGOUT),
                ..ccr(
                    CcRequestType::TERMINATION_REQUEST,
                    2,
                    mscc(None, Some(units(Some(42), Some(2048)))),
                )
            },
            9,
            ccr_expect(3, 2)
                + &format!(
                    "\nTermination-Cause = 1
                     {m}/Rating-Group = 10
                     {m}/{usu}/CC-Time = 42
                     {m}/{usu}/CC-Total-Octets = 2048"
                ),
        ),
        typed(
            "cca",
            &Cca {
                session_id: CC_SESSION,
                result_code: ok,
                origin_host: OCS_HOST,
                origin_realm: OCS_REALM,
                auth_application_id: 4,
                cc_request_type: CcRequestType::UPDATE_REQUEST,
                cc_request_number: 1,
                multiple_services_credit_control: smallvec![Mscc {
                    granted_service_unit: Some(units(Some(3600), Some(10_485_760))),
                    rating_group: Some(10),
                    validity_time: Some(600),
                    result_code: Some(ok),
                    final_unit_indication: Some(FinalUnitIndication {
                        final_unit_action: FinalUnitAction::TERMINATE,
                    }),
                    ..Mscc::default()
                }],
                ..Cca::default()
            },
            8,
            format!(
                "Session-Id = {CC_SESSION}
                 Result-Code = 2001
                 Origin-Host = {OCS_HOST}
                 Origin-Realm = {OCS_REALM}
                 Auth-Application-Id = 4
                 CC-Request-Type = 2
                 CC-Request-Number = 1
                 {m}/{gsu}/CC-Time = 3600
                 {m}/{gsu}/CC-Total-Octets = 10485760
                 {m}/Rating-Group = 10
                 {m}/Validity-Time = 600
                 {m}/Result-Code = 2001
                 {m}/Final-Unit-Indication/Final-Unit-Action = 0"
            ),
        ),
        typed(
            "asr",
            &Asr {
                session_id: CC_SESSION,
                origin_host: OCS_HOST,
                origin_realm: OCS_REALM,
                destination_realm: GW_REALM,
                destination_host: GW_HOST,
                auth_application_id: 4,
                termination_cause: Some(TerminationCause::ADMINISTRATIVE),
                error_message: Some("credit exhausted"),
                ..Asr::default()
            },
            10,
            format!(
                "Session-Id = {CC_SESSION}
                 Origin-Host = {OCS_HOST}
                 Destination-Host = {GW_HOST}
                 Auth-Application-Id = 4
                 Termination-Cause = 4
                 Error-Message = credit exhausted"
            ),
        ),
        typed(
            "asa",
            &Asa {
                session_id: CC_SESSION,
                result_code: ok,
                origin_host: GW_HOST,
                origin_realm: GW_REALM,
                ..Asa::default()
            },
            10,
            format!("Session-Id = {CC_SESSION}\nResult-Code = 2001\nOrigin-Host = {GW_HOST}"),
        ),
        typed(
            "rar",
            &Rar {
                session_id: CC_SESSION,
                origin_host: OCS_HOST,
                origin_realm: OCS_REALM,
                destination_realm: GW_REALM,
                destination_host: GW_HOST,
                auth_application_id: 4,
                re_auth_request_type: ReAuthRequestType::AUTHORIZE_ONLY,
                ..Rar::default()
            },
            11,
            format!(
                "Session-Id = {CC_SESSION}
                 Destination-Host = {GW_HOST}
                 Re-Auth-Request-Type = 0"
            ),
        ),
        typed(
            "raa",
            &Raa {
                session_id: CC_SESSION,
                result_code: ok,
                origin_host: GW_HOST,
                origin_realm: GW_REALM,
                ..Raa::default()
            },
            11,
            format!("Session-Id = {CC_SESSION}\nResult-Code = 2001\nOrigin-Host = {GW_HOST}"),
        ),
    ];
    cases.extend(unknown_avp_exchange());
    cases
}

/// A CCR carrying an AVP nobody defines, with the M bit, which our decoder refuses with
/// 5001, and the error answer quoting that AVP in Failed-AVP. tshark, not knowing the AVP
/// either, must say so in both.
fn unknown_avp_exchange() -> [Case; 2] {
    let mut request = BytesMut::new();
    let mut w = MessageWriter::new(
        &mut request,
        CommandFlags::REQUEST.with(CommandFlags::PROXIABLE),
        CommandCode::CREDIT_CONTROL,
        ApplicationId::CREDIT_CONTROL,
        HopByHopId(12),
        EndToEndId(0x5a5a_000c),
    );
    ccr(CcRequestType::EVENT_REQUEST, 0, None).encode_avps(&mut w);
    w.raw(
        AvpCode(UNKNOWN_AVP),
        AvpFlags::MANDATORY,
        None,
        b"must be understood",
    );
    w.finish();
    let view = MessageView::parse(&request).expect("the request we just wrote parses");
    let error = Ccr::decode(&view).expect_err("an unknown M-bit AVP is refused");
    let mut answer = BytesMut::new();
    encode_error_answer(&view, &error, OCS_HOST, OCS_REALM, &mut answer).expect("5001 is answered");
    const UNKNOWN: &[&str] = &["Unknown AVP 16702650"];
    [
        Case {
            name: "ccr-unknown-avp",
            bytes: request.to_vec(),
            command: 272,
            request: true,
            expect: ccr_expect(4, 0) + &format!("\navp.code = {UNKNOWN_AVP}"),
            warnings: UNKNOWN,
        },
        Case {
            name: "error-answer-5001",
            bytes: answer.to_vec(),
            command: 272,
            request: false,
            expect: format!(
                "Session-Id = {CC_SESSION}
                 Result-Code = 5001
                 Origin-Host = {OCS_HOST}
                 Origin-Realm = {OCS_REALM}
                 Auth-Application-Id = 4
                 CC-Request-Type = 4
                 CC-Request-Number = 0
                 Error-Message = {error}
                 Failed-AVP/avp.code = {UNKNOWN_AVP}"
            ),
            warnings: UNKNOWN,
        },
    ]
}

/// An expert info: (severity, message).
type Expert = (u32, String);

/// What tshark made of one packet.
#[derive(Debug, Default)]
struct Packet {
    /// Every `diameter.*` field, as (path through Grouped AVPs, shown value).
    fields: Vec<(String, String)>,
    /// Expert infos.
    experts: Vec<Expert>,
    /// Whether tshark marked the packet as malformed.
    malformed: bool,
    /// How many Diameter PDUs tshark found in the packet.
    diameter_pdus: usize,
}

impl Packet {
    fn values(&self, path: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Checks the packet against what we meant to send; returns the problems found.
    fn check(
        &self,
        name: &str,
        case: (&[u8], u32, bool),
        expect: &str,
        warnings: &[&str],
    ) -> Vec<String> {
        let (bytes, command, request) = case;
        let mut problems = Vec::new();
        if self.diameter_pdus != 1 {
            problems.push(format!(
                "{name}: {} Diameter PDUs, expected 1",
                self.diameter_pdus
            ));
        }
        if self.malformed {
            problems.push(format!("{name}: tshark marks it as malformed"));
        }
        let header = format!(
            "cmd.code = {command}\nflags.request = {}\nlength = {}",
            u8::from(request),
            bytes.len()
        );
        for line in header
            .lines()
            .chain(expect.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            let (path, want) = line
                .split_once(" = ")
                .unwrap_or_else(|| panic!("bad expectation {line:?}"));
            let got = self.values(path);
            if !got.contains(&want) {
                problems.push(format!("{name}: {path} is {got:?}, expected {want:?}"));
            }
        }
        let serious: Vec<&str> = self
            .experts
            .iter()
            .filter(|(s, _)| *s >= SEVERITY_WARNING)
            .map(|(_, m)| m.as_str())
            .collect();
        for message in &serious {
            if !warnings.iter().any(|w| message.starts_with(w)) {
                problems.push(format!("{name}: expert info: {message}"));
            }
        }
        for warning in warnings {
            if !serious.iter().any(|m| m.starts_with(warning)) {
                problems.push(format!(
                    "{name}: no expert warning {warning:?}; got {serious:?}"
                ));
            }
        }
        problems
    }
}

/// A directory under the system temp dir, unique to this call, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let unique = format!(
            "{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(format!("diameter-tshark-{tag}-{unique}"));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    fn file(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("temp paths are UTF-8")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a tool; panics with the command line and its output when it cannot run or fails.
fn run(program: &str, args: &[&str]) -> String {
    let command = format!("{program} {}", args.join(" "));
    let output = match Process::new(program).args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed ({e}). This interop test needs tshark and text2pcap: \
             run scripts/test, which installs them (or `apt-get install tshark`, see \
             shared/README.md)."
        ),
        Err(e) => panic!("cannot run `{command}`: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "`{command}`: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// Has tshark dissect the messages, each in its own TCP segment to port 3868.
fn dissect(tag: &str, messages: &[&[u8]]) -> Vec<Packet> {
    let dir = TempDir::new(tag);
    let (dump, pcap) = (dir.file("messages.txt"), dir.file("messages.pcap"));
    // text2pcap's input: offset, then bytes; an offset of 0 starts a new packet.
    let mut text = String::new();
    for message in messages {
        for (line, chunk) in message.chunks(16).enumerate() {
            let _ = write!(text, "{:06x} ", line * 16);
            for byte in chunk {
                let _ = write!(text, " {byte:02x}");
            }
            text.push('\n');
        }
    }
    std::fs::write(&dump, text).unwrap_or_else(|e| panic!("writing {dump}: {e}"));
    run("text2pcap", &["-q", "-T", "40000,3868", &dump, &pcap]);
    let pdml = run(
        "tshark",
        &[
            "-n",
            "-r",
            &pcap,
            "-d",
            "tcp.port==3868,diameter",
            "-T",
            "pdml",
        ],
    );
    let packets = parse_pdml(&pdml);
    assert_eq!(
        packets.len(),
        messages.len(),
        "{} messages became {} packets",
        messages.len(),
        packets.len()
    );
    packets
}

/// Reads tshark's PDML, which has one `<proto>` or `<field>` element per line. A field's
/// path is made of the `diameter.<name>` elements it sits in, without the generic
/// `diameter.avp` and flags containers: `Multiple-Services-Credit-Control/Rating-Group`.
fn parse_pdml(pdml: &str) -> Vec<Packet> {
    let mut packets = Vec::new();
    let mut packet = Packet::default();
    // Open elements: their path component, and the expert info that `_ws.expert` collects.
    let mut open: Vec<(Option<String>, Option<Expert>)> = Vec::new();
    for line in pdml.lines().map(str::trim) {
        match line {
            "<packet>" => open.clear(),
            "</packet>" => packets.push(std::mem::take(&mut packet)),
            "</field>" | "</proto>" => {
                if let Some((_, Some(expert))) = open.pop() {
                    packet.experts.push(expert);
                }
            }
            _ if line.starts_with("<field ") || line.starts_with("<proto ") => {
                let name = attribute(line, "name");
                let show = attribute(line, "show");
                packet.malformed |= name.starts_with("_ws.malformed");
                if name == "diameter" && line.starts_with("<proto ") {
                    packet.diameter_pdus += 1;
                }
                if let Some((_, Some(expert))) = open.last_mut() {
                    match name.as_str() {
                        "_ws.expert.severity" => expert.0 = show.parse().unwrap_or(u32::MAX),
                        "_ws.expert.message" => expert.1.clone_from(&show),
                        _ => {}
                    }
                }
                let field = name.strip_prefix("diameter.");
                if let Some(field) = field {
                    let mut path: Vec<&str> =
                        open.iter().filter_map(|(c, _)| c.as_deref()).collect();
                    path.push(field);
                    packet.fields.push((path.join("/"), show));
                }
                if !line.ends_with("/>") {
                    let component = field.filter(|f| !matches!(*f, "avp" | "flags" | "avp.flags"));
                    let expert = (name == "_ws.expert").then(|| (u32::MAX, String::new()));
                    open.push((component.map(str::to_owned), expert));
                }
            }
            _ => {}
        }
    }
    packets
}

/// The value of `key="..."` in a PDML element, unescaped; empty when absent.
fn attribute(line: &str, key: &str) -> String {
    let pattern = format!(" {key}=\"");
    let Some(start) = line.find(&pattern).map(|i| i + pattern.len()) else {
        return String::new();
    };
    let value = &line[start..start + line[start..].find('"').unwrap_or(0)];
    value
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Panics with every problem and, to diagnose them, every field tshark decoded.
fn report(problems: &[String], packets: &[Packet]) {
    if problems.is_empty() {
        return;
    }
    let mut detail = String::new();
    for (i, packet) in packets.iter().enumerate() {
        let _ = writeln!(detail, "packet {}: experts {:?}", i + 1, packet.experts);
        for (path, value) in &packet.fields {
            let _ = writeln!(detail, "  {path} = {value}");
        }
    }
    panic!(
        "tshark disagrees:\n  {}\n\nwhat tshark decoded:\n{detail}",
        problems.join("\n  ")
    );
}

#[test]
fn tshark_decodes_every_message_we_encode() {
    let cases = messages();
    let wire: Vec<&[u8]> = cases.iter().map(|c| c.bytes.as_slice()).collect();
    let packets = dissect("messages", &wire);
    let mut problems = Vec::new();
    for (case, packet) in cases.iter().zip(&packets) {
        let header = (case.bytes.as_slice(), case.command, case.request);
        problems.extend(packet.check(case.name, header, &case.expect, case.warnings));
    }
    report(&problems, &packets);
}

/// The reference vectors, encoded by Erlang/OTP, through the same harness: checks the hex
/// dump, text2pcap and PDML reading against messages we did not encode.
#[test]
fn tshark_decodes_the_reference_vectors() {
    let load = |name: &str| {
        let path = format!("{}/../../shared/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        hex::decode(text.trim()).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let vectors = [
        load("ccr-update.hex"),
        load("cca-update.hex"),
        load("acr-interim.hex"),
    ];
    let m = "Multiple-Services-Credit-Control";
    let cases: [(u32, bool, String, &[&str]); 3] = [
        (
            272,
            true,
            format!(
                "Session-Id = gw1.example.net;1700000000;42;sub-491700000042
                 CC-Request-Type = 2
                 CC-Request-Number = 7
                 Subscription-Id/Subscription-Id-Data = 491700000042
                 {m}/Used-Service-Unit/CC-Time = 120
                 {m}/Used-Service-Unit/CC-Total-Octets = 5242880
                 {m}/Rating-Group = 10"
            ),
            // The only expert info the vectors' README documents: the empty
            // Requested-Service-Unit. It also shows that warnings are seen.
            &["Data is empty"],
        ),
        (
            272,
            false,
            format!(
                "Result-Code = 2001
                 Origin-Host = ocs1.ocs.example.net
                 {m}/Granted-Service-Unit/CC-Total-Octets = 10485760
                 {m}/Validity-Time = 600
                 {m}/Final-Unit-Indication/Final-Unit-Action = 0"
            ),
            &[],
        ),
        (
            271,
            true,
            "Session-Id = lg1.example.net;1700000000;42
             Accounting-Record-Type = 3
             Accounting-Record-Number = 5
             User-Name = 491700000042"
                .to_owned(),
            &[],
        ),
    ];
    let wire: Vec<&[u8]> = vectors.iter().map(Vec::as_slice).collect();
    let packets = dissect("vectors", &wire);
    let mut problems = Vec::new();
    for (i, (command, request, expect, warnings)) in cases.iter().enumerate() {
        let name = ["ccr-update.hex", "cca-update.hex", "acr-interim.hex"][i];
        problems.extend(packets[i].check(
            name,
            (&vectors[i], *command, *request),
            expect,
            warnings,
        ));
    }
    report(&problems, &packets);
}

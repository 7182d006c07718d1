//! Capabilities exchange (RFC 6733 section 5.3): building CER and CEA from the local
//! configuration, and deciding whether a remote peer's offer is acceptable (allowlist,
//! applications in common).

use std::net::IpAddr;

use bytes::BytesMut;
use smallvec::SmallVec;

use super::{PeerConfig, PeerInfo};
use crate::avp::Address;
use crate::grammar::{Command, Envelope};
use crate::header::{ApplicationId, CommandCode, CommandFlags, EndToEndId, HopByHopId};
use crate::message::MessageView;
use crate::messages::{Cea, Cer, ErrorAnswer, VendorSpecificApplicationId};
use crate::result_code::ResultCode;

/// The application ids a CER or CEA advertises, flattened.
fn advertised(
    auth: &[u32],
    acct: &[u32],
    vendor_specific: &[VendorSpecificApplicationId],
) -> SmallVec<[ApplicationId; 4]> {
    let mut apps: SmallVec<[ApplicationId; 4]> = auth
        .iter()
        .chain(acct)
        .copied()
        .map(ApplicationId)
        .collect();
    for vsai in vendor_specific {
        apps.extend(vsai.auth_application_id.map(ApplicationId));
        apps.extend(vsai.acct_application_id.map(ApplicationId));
    }
    apps
}

/// The applications both sides support (RFC 6733 section 5.3: the relay id matches all).
pub(crate) fn common_applications(
    ours: &[ApplicationId],
    theirs: &[ApplicationId],
) -> Vec<ApplicationId> {
    let relay = |apps: &[ApplicationId]| apps.contains(&ApplicationId::RELAY);
    let mut common: Vec<ApplicationId> = if relay(theirs) {
        ours.to_vec()
    } else if relay(ours) {
        theirs.to_vec()
    } else {
        ours.iter()
            .copied()
            .filter(|app| theirs.contains(app))
            .collect()
    };
    common.sort_unstable();
    common.dedup();
    common
}

fn addresses(config: &PeerConfig) -> SmallVec<[Address<'_>; 2]> {
    let mut addresses: SmallVec<[Address<'_>; 2]> = config
        .host_ip_addresses
        .iter()
        .copied()
        .map(Address::Ip)
        .collect();
    if addresses.is_empty() {
        // Host-IP-Address is required (1*); the loopback address stands in until the transport
        // tells the configuration its real address.
        addresses.push(Address::Ip(IpAddr::from([127, 0, 0, 1])));
    }
    addresses
}

fn ids(apps: &[ApplicationId]) -> SmallVec<[u32; 2]> {
    apps.iter().map(|app| app.0).collect()
}

/// Writes our CER.
pub(crate) fn write_cer(
    config: &PeerConfig,
    hop: HopByHopId,
    end_to_end: EndToEndId,
    out: &mut BytesMut,
) {
    let cer = Cer {
        origin_host: &config.origin_host,
        origin_realm: &config.origin_realm,
        host_ip_addresses: addresses(config),
        vendor_id: config.vendor_id,
        product_name: &config.product_name,
        origin_state_id: Some(config.origin_state_id),
        auth_application_ids: ids(&config.auth_application_ids),
        acct_application_ids: ids(&config.acct_application_ids),
        firmware_revision: config.firmware_revision,
        ..Default::default()
    };
    cer.encode(
        Envelope::request(ApplicationId::COMMON, hop, end_to_end),
        out,
    );
}

/// Writes our CEA with `result_code` in answer to `request`; a 3xxx code uses the generic
/// error grammar with the E bit.
pub(crate) fn write_cea(
    config: &PeerConfig,
    request: &MessageView<'_>,
    result_code: ResultCode,
    error_message: Option<&str>,
    out: &mut BytesMut,
) {
    if result_code.is_protocol_error() {
        let answer = ErrorAnswer {
            origin_host: &config.origin_host,
            origin_realm: &config.origin_realm,
            result_code,
            origin_state_id: Some(config.origin_state_id),
            error_message,
            ..Default::default()
        };
        answer.encode(request, out);
        return;
    }
    let cea = Cea {
        result_code,
        origin_host: &config.origin_host,
        origin_realm: &config.origin_realm,
        host_ip_addresses: addresses(config),
        vendor_id: config.vendor_id,
        product_name: &config.product_name,
        origin_state_id: Some(config.origin_state_id),
        error_message,
        auth_application_ids: ids(&config.auth_application_ids),
        acct_application_ids: ids(&config.acct_application_ids),
        firmware_revision: config.firmware_revision,
        ..Default::default()
    };
    cea.encode(Envelope::answer_to(request.header()), out);
}

/// The verdict on a peer's CER or CEA.
pub(crate) enum Verdict {
    /// Accept: the connection is open with this peer.
    Accept(PeerInfo),
    /// Refuse with this Result-Code and reason.
    Refuse(ResultCode, &'static str),
}

/// Judges a received CER (responder side).
pub(crate) fn judge_cer(config: &PeerConfig, cer: &Cer<'_>) -> Verdict {
    if let Some(allowed) = &config.allowed_peers {
        if !allowed
            .iter()
            .any(|host| host.eq_ignore_ascii_case(cer.origin_host))
        {
            return Verdict::Refuse(ResultCode::UNKNOWN_PEER, "Origin-Host not on the allowlist");
        }
    }
    let theirs = advertised(
        &cer.auth_application_ids,
        &cer.acct_application_ids,
        &cer.vendor_specific_application_ids,
    );
    let common = common_applications(&config.applications(), &theirs);
    if common.is_empty() {
        return Verdict::Refuse(
            ResultCode::NO_COMMON_APPLICATION,
            "no application in common",
        );
    }
    Verdict::Accept(PeerInfo {
        origin_host: cer.origin_host.to_owned(),
        origin_realm: cer.origin_realm.to_owned(),
        origin_state_id: cer.origin_state_id,
        product_name: cer.product_name.to_owned(),
        applications: common,
    })
}

/// Judges a received CEA (initiator side).
pub(crate) fn judge_cea(config: &PeerConfig, view: &MessageView<'_>) -> Verdict {
    if view.header().flags.is_error() {
        return match ErrorAnswer::decode(view) {
            Ok(error) => Verdict::Refuse(error.result_code, "the peer refused our CER"),
            Err(_) => Verdict::Refuse(ResultCode::UNABLE_TO_COMPLY, "unreadable error CEA"),
        };
    }
    let cea = match Cea::decode(view) {
        Ok(cea) => cea,
        Err(_) => return Verdict::Refuse(ResultCode::UNABLE_TO_COMPLY, "unreadable CEA"),
    };
    if cea.result_code != ResultCode::SUCCESS {
        return Verdict::Refuse(cea.result_code, "the peer refused our CER");
    }
    let theirs = advertised(
        &cea.auth_application_ids,
        &cea.acct_application_ids,
        &cea.vendor_specific_application_ids,
    );
    let common = common_applications(&config.applications(), &theirs);
    if common.is_empty() {
        return Verdict::Refuse(
            ResultCode::NO_COMMON_APPLICATION,
            "no application in common",
        );
    }
    Verdict::Accept(PeerInfo {
        origin_host: cea.origin_host.to_owned(),
        origin_realm: cea.origin_realm.to_owned(),
        origin_state_id: cea.origin_state_id,
        product_name: cea.product_name.to_owned(),
        applications: common,
    })
}

/// Whether a message is a CER (request) or CEA (answer).
pub(crate) fn is_capabilities_exchange(view: &MessageView<'_>, request: bool) -> bool {
    view.header().command == CommandCode::CAPABILITIES_EXCHANGE
        && view.header().flags.contains(CommandFlags::REQUEST) == request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_matches_everything() {
        let (cc, acct) = (
            ApplicationId::CREDIT_CONTROL,
            ApplicationId::BASE_ACCOUNTING,
        );
        assert_eq!(common_applications(&[cc, acct], &[cc]), vec![cc]);
        assert_eq!(common_applications(&[cc], &[acct]), vec![]);
        assert_eq!(
            common_applications(&[cc, acct], &[ApplicationId::RELAY]),
            vec![acct, cc]
        );
        assert_eq!(
            common_applications(&[ApplicationId::RELAY], &[cc]),
            vec![cc]
        );
    }
}

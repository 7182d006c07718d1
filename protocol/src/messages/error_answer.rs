//! Error answers (RFC 6733 sections 7.2 and 7.5): reading any answer that carries the E bit,
//! and building the answer to a request that failed to decode.
//!
//! ```text
//! <answer-message> ::= < Diameter Header: code, ERR [, PXY] >
//!                      0*1< Session-Id > { Origin-Host } { Origin-Realm } { Result-Code }
//!                      [ Origin-State-Id ] [ Error-Message ] [ Error-Reporting-Host ]
//!                      [ Failed-AVP ] [ Experimental-Result ] * [ Redirect-Host ]
//!                      [ Redirect-Host-Usage ] [ Redirect-Max-Cache-Time ]
//!                      * [ Proxy-Info ] * [ AVP ]
//! ```
//!
//! Protocol errors (3xxx) use that generic grammar with the E bit. Other errors (5xxx) are
//! sent without the E bit in the command's own answer, so the builder also copies from the
//! request the AVPs that answers of our applications require (application id, request type
//! and number) when they are readable.

use bytes::BytesMut;
use smallvec::SmallVec;

use crate::avp_struct;
use crate::dictionary::{self, codes, RedirectHostUsage};
use crate::encode::MessageWriter;
use crate::error::{DecodeError, Disposition, FailedAvp};
use crate::grammar::FailedAvpData;
use crate::header::CommandFlags;
use crate::message::MessageView;
use crate::result_code::ResultCode;

avp_struct! {
    /// The generic error answer, decoded leniently (any other AVP is skipped). Use it for an
    /// answer whose header has the E bit, whatever the command; 3006 REDIRECT_INDICATION
    /// carries its Redirect-Host here.
    grouped ErrorAnswer<'a> ['a] {
        /// Session-Id, when the request had one.
        session_id: opt &'a str = SESSION_ID,
        /// Origin-Host.
        origin_host: one &'a str = ORIGIN_HOST,
        /// Origin-Realm.
        origin_realm: one &'a str = ORIGIN_REALM,
        /// Result-Code.
        result_code: one ResultCode = RESULT_CODE,
        /// Origin-State-Id.
        origin_state_id: opt u32 = ORIGIN_STATE_ID,
        /// Error-Message.
        error_message: opt &'a str = ERROR_MESSAGE,
        /// Error-Reporting-Host.
        error_reporting_host: opt &'a str = ERROR_REPORTING_HOST,
        /// Failed-AVP.
        failed_avp: opt FailedAvpData<'a> = FAILED_AVP,
        /// Redirect-Host: where to re-send (DiameterURI).
        redirect_hosts: many SmallVec<[&'a str; 1]> = REDIRECT_HOST,
        /// Redirect-Host-Usage.
        redirect_host_usage: opt RedirectHostUsage = REDIRECT_HOST_USAGE,
        /// Redirect-Max-Cache-Time.
        redirect_max_cache_time: opt u32 = REDIRECT_MAX_CACHE_TIME,
    }
}

impl<'a> ErrorAnswer<'a> {
    /// Reads any answer leniently: only Origin-Host, Origin-Realm and Result-Code are
    /// required. Fails with 3001 on a request.
    pub fn decode(view: &MessageView<'a>) -> Result<Self, DecodeError> {
        if view.header().is_request() {
            return Err(DecodeError::CommandUnsupported {
                command: view.header().command,
            });
        }
        Self::decode_avps_with(view.avps(), false)
    }

    /// Writes the answer to `request` with `result_code` and a readable `text`: the generic
    /// grammar (E bit for 3xxx), the request's Session-Id, our identity. The one way the
    /// stack refuses a request it cannot or will not process.
    pub fn reply(
        request: &MessageView<'_>,
        origin_host: &str,
        origin_realm: &str,
        result_code: ResultCode,
        text: &str,
        buf: &mut BytesMut,
    ) -> usize {
        ErrorAnswer {
            session_id: request.session_id(),
            origin_host,
            origin_realm,
            result_code,
            error_message: Some(text),
            ..Default::default()
        }
        .encode(request, buf)
    }

    /// Encodes this as the answer to `request`: same command, application and identifiers,
    /// P copied, and the E bit when the Result-Code is a protocol error.
    pub fn encode(&self, request: &MessageView<'_>, buf: &mut BytesMut) -> usize {
        let header = request.header();
        let mut flags = header
            .flags
            .without(CommandFlags::REQUEST.with(CommandFlags::RETRANSMIT));
        // E is set below only for protocol errors, whatever the request carried (RFC 6733 3).
        flags = flags.without(CommandFlags::RESERVED.with(CommandFlags::ERROR));
        if self.result_code.is_protocol_error() {
            flags = flags.with(CommandFlags::ERROR);
        }
        let mut w = MessageWriter::new(
            buf,
            flags,
            header.command,
            header.application,
            header.hop_by_hop,
            header.end_to_end,
        );
        self.encode_avps(&mut w);
        w.finish()
    }
}

/// Request AVPs copied into a non-protocol error answer so that it still satisfies the
/// command's answer grammar (CCA and ACA require them).
const ECHOED_AVPS: [u32; 6] = [
    codes::AUTH_APPLICATION_ID,
    codes::ACCT_APPLICATION_ID,
    codes::CC_REQUEST_TYPE,
    codes::CC_REQUEST_NUMBER,
    codes::ACCOUNTING_RECORD_TYPE,
    codes::ACCOUNTING_RECORD_NUMBER,
];

/// Builds the answer to a request that failed to decode with `error`, at the end of `buf`.
///
/// Returns `None`, writing nothing, when the error calls for closing the connection or the
/// message is not a request (answers are never answered).
pub fn encode_error_answer(
    request: &MessageView<'_>,
    error: &DecodeError,
    origin_host: &str,
    origin_realm: &str,
    buf: &mut BytesMut,
) -> Option<usize> {
    let Disposition::Answer {
        result_code,
        failed_avp,
    } = error.disposition()
    else {
        return None;
    };
    let header = request.header();
    if !header.is_request() {
        return None;
    }
    let mut flags = header
        .flags
        .without(CommandFlags::REQUEST.with(CommandFlags::RETRANSMIT));
    // E is set below only for protocol errors, whatever the request carried (RFC 6733 3).
    flags = flags.without(CommandFlags::RESERVED.with(CommandFlags::ERROR));
    let protocol_error = result_code.is_protocol_error();
    if protocol_error {
        flags = flags.with(CommandFlags::ERROR);
    }
    let mut w = MessageWriter::new(
        buf,
        flags,
        header.command,
        header.application,
        header.hop_by_hop,
        header.end_to_end,
    );
    if let Some(session_id) = request.session_id() {
        w.utf8(&dictionary::SESSION_ID, session_id);
    }
    w.u32(&dictionary::RESULT_CODE, result_code.0);
    w.utf8(&dictionary::ORIGIN_HOST, origin_host);
    w.utf8(&dictionary::ORIGIN_REALM, origin_realm);
    if !protocol_error {
        // Stop at the first malformed AVP: everything after it is untrustworthy. Each echoed
        // AVP is single in the answer grammar, so only its first occurrence is copied.
        let mut echoed = [false; ECHOED_AVPS.len()];
        for avp in request.avps().map_while(Result::ok) {
            let Some(index) = ECHOED_AVPS.iter().position(|&code| code == avp.code().0) else {
                continue;
            };
            if avp.vendor_id().is_none() && avp.data().len() == 4 && !echoed[index] {
                echoed[index] = true;
                w.copy_encoded(&request.bytes()[avp.offset() as usize..][..avp.length() as usize]);
            }
        }
    }
    w.utf8(&dictionary::ERROR_MESSAGE, &error.to_string());
    if let Some(failed) = failed_avp {
        w.group(&dictionary::FAILED_AVP, |g| match failed {
            FailedAvp::Copy(at) => {
                let start = at.offset as usize;
                match request.bytes().get(start..start + at.length as usize) {
                    Some(avp) => g.copy_encoded(avp),
                    None => zero_filled(g, at.code, at.vendor, at.flags),
                }
            }
            FailedAvp::ZeroFilled {
                code,
                vendor,
                flags,
            } => zero_filled(g, code, vendor, flags),
        });
    }
    Some(w.finish())
}

fn zero_filled(
    g: &mut crate::encode::AvpWriter<'_>,
    code: crate::avp::AvpCode,
    vendor: Option<crate::avp::VendorId>,
    flags: crate::avp::AvpFlags,
) {
    const ZEROS: [u8; 8] = [0; 8];
    let len = dictionary::lookup(code, vendor).map_or(0, |def| def.ty.minimum_length());
    // The V bit is re-derived from `vendor` by the writer.
    let flags = crate::avp::AvpFlags(flags.0 & !crate::avp::AvpFlags::VENDOR.0);
    g.raw(code, flags, vendor, &ZEROS[..len]);
}
